import Crypto
import Foundation
import HummingbirdBcrypt
import NIOConcurrencyHelpers
import NIOPosix
import ServiceLifecycle

/// Password hashing: bcrypt of a SHA-256 pre-hash, on a thread pool of its own.
///
/// bcrypt reads only the first 72 bytes of its input, so `"가" * 24 + anything` would match
/// any other password with the same first 24 syllables. A password is therefore first reduced
/// to the base64 text of its HMAC-SHA-256 (44 ASCII bytes, every byte of the password
/// counts) and that is hashed with bcrypt. Stored hashes say which scheme made them:
/// `$chat2$` followed by the bcrypt hash; a plain bcrypt hash (`$2…`, from before) still
/// verifies, and `verify` reports that it should be replaced (as it does when `BCRYPT_COST`
/// changed), which the login does with the password it just checked.
///
/// A hash at cost 12 takes a few hundred milliseconds of CPU. It runs on this hasher's own
/// threads (`BCRYPT_THREADS`), never on Swift concurrency, event-loop or file I/O threads, and
/// at most `maxPending` hashes wait or run at once: past that a request is refused at once
/// (`Busy`, answered 503 with Retry-After), so a login flood cannot queue without bound.
final class PasswordHasher: Service, Sendable {
    /// Too many password hashes are in progress.
    struct Busy: Error {}

    enum Verification: Equatable {
        case invalid
        /// `needsRehash`: made with the legacy scheme or another cost; store `hash(password)`.
        case valid(needsRehash: Bool)
    }

    static let prefix = "$chat2$"
    let cost: UInt8
    let maxPending: Int
    private let threadPool: NIOThreadPool
    private let pending = NIOLockedValueBox(0)

    init(cost: Int, threads: Int = 2, maxPending: Int = 16) {
        self.cost = UInt8(clamping: min(max(cost, 4), 31))
        self.maxPending = max(1, maxPending)
        self.threadPool = NIOThreadPool(numberOfThreads: max(1, threads))
        threadPool.start()
    }

    func run() async throws {
        try? await gracefulShutdown()
        try? await threadPool.shutdownGracefully()
    }

    func hash(_ password: String) async throws -> String {
        let (cost, input) = (self.cost, Self.preHashed(password))
        return try await onPool { Self.prefix + Bcrypt.hash(input, cost: cost) }
    }

    func verify(_ password: String, hash: String) async throws -> Verification {
        let cost = self.cost
        return try await onPool {
            if hash.hasPrefix(Self.prefix) {
                let bcrypt = String(hash.dropFirst(Self.prefix.count))
                guard Bcrypt.verify(Self.preHashed(password), hash: bcrypt) else { return .invalid }
                return .valid(needsRehash: Self.cost(of: bcrypt) != cost)
            }
            // Legacy: bcrypt of the password itself.
            guard Bcrypt.verify(password, hash: hash) else { return .invalid }
            return .valid(needsRehash: true)
        }
    }

    /// A valid hash of a random password at this cost, verified against when the user name
    /// is unknown so that a login's timing does not tell whether the name exists.
    func makeDecoyHash() async throws -> String {
        try await hash("decoy-\(UInt64.random(in: .min ... .max))")
    }

    static func preHashed(_ password: String) -> String {
        let key = SymmetricKey(data: Data("chat-server password pre-hash v2".utf8))
        return Data(HMAC<SHA256>.authenticationCode(for: Data(password.utf8), using: key)).base64EncodedString()
    }

    /// The cost field of a bcrypt hash (`$2b$12$…` → 12).
    static func cost(of bcrypt: String) -> UInt8? {
        let parts = bcrypt.split(separator: "$", omittingEmptySubsequences: true)
        return parts.count >= 2 ? UInt8(parts[1]) : nil
    }

    private func onPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let admitted = pending.withLockedValue { pending in
            guard pending < maxPending else { return false }
            pending += 1
            return true
        }
        guard admitted else { throw Busy() }
        defer { pending.withLockedValue { $0 -= 1 } }
        return try await threadPool.runIfActive(body)
    }
}
