import NIOConcurrencyHelpers
import Postgres

/// Where the stores' statements run.
///
/// Writes, reads inside a write, and reads that decide a write or a delivery run on the
/// primary. The reads a client pages through (history, search, room list and detail,
/// participants, settings, presence) run on a streaming replica when replicas are configured
/// and one has replayed the reading user's own latest write (read-your-writes, see
/// `PostgresReplicas`); else on the primary. Without replicas everything is the primary and
/// nothing is tracked.
public struct ChatDatabase: Sendable {
    public let primary: PostgresClient
    public let replicas: PostgresReplicas?
    let writes: RecentWrites?

    public init(primary: PostgresClient, replicas: PostgresReplicas? = nil) {
        self.primary = primary
        self.replicas = replicas
        self.writes = replicas.map { RecentWrites(window: $0.settings.readYourWritesWindow) }
    }

    /// A read made for `userID`. "Not found" and "forbidden" from a replica are checked
    /// again on the primary: that is what lag looks like for something another user has just
    /// created (a room the reader was added to, a message a socket has just delivered).
    func read<Result>(for userID: Int64, _ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        guard let replicas, let writes else { return try await primary.withConnection(body) }
        return try await replicas.read(
            seeingWritesBefore: writes.last(by: userID),
            recheckOnPrimary: { error in
                switch error as? ChatError {
                case .notFound, .forbidden: true
                default: false
                }
            },
            body)
    }

    /// Notes that `userID` has just written (after the commit): their reads go to the
    /// primary until a replica has replayed the write.
    func wrote(by userID: Int64) {
        writes?.note(userID)
    }
}

/// When each user last wrote, for the read-your-writes window.
final class RecentWrites: Sendable {
    typealias Instant = ContinuousClock.Instant
    let window: Duration
    private let state = NIOLockedValueBox(State())

    struct State {
        var last: [Int64: Instant] = [:]
        /// Prune expired entries when the table reaches this size.
        var pruneAt = 1024
    }

    init(window: Duration) {
        self.window = window
    }

    func note(_ userID: Int64, at now: Instant = .now) {
        state.withLockedValue { state in
            state.last[userID] = now
            if state.last.count >= state.pruneAt {
                state.last = state.last.filter { now - $0.value < window }
                state.pruneAt = max(1024, state.last.count * 2)
            }
        }
    }

    func last(by userID: Int64, now: Instant = .now) -> Instant? {
        state.withLockedValue { state in
            guard let instant = state.last[userID], now - instant < window else { return nil }
            return instant
        }
    }
}
