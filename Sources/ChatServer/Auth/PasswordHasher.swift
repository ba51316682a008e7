import HummingbirdBcrypt
import NIOPosix

/// bcrypt, run on NIO's blocking thread pool: a hash at cost 12 takes a few hundred
/// milliseconds of CPU and must not occupy a Swift concurrency or event-loop thread.
struct PasswordHasher: Sendable {
    let cost: UInt8
    let threadPool: NIOThreadPool

    init(cost: Int, threadPool: NIOThreadPool = .singleton) {
        self.cost = UInt8(clamping: min(max(cost, 4), 31))
        self.threadPool = threadPool
    }

    func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await threadPool.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    func verify(_ password: String, hash: String) async throws -> Bool {
        try await threadPool.runIfActive { Bcrypt.verify(password, hash: hash) }
    }

    /// A valid hash of a random password at this cost, verified against when the user name
    /// is unknown so that a login's timing does not tell whether the name exists.
    func makeDecoyHash() async throws -> String {
        try await hash("decoy-\(UInt64.random(in: .min ... .max))")
    }
}
