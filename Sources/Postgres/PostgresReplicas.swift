import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// A position in the write-ahead log (`pg_lsn`, written `16/B374D848`).
public struct WALPosition: Sendable, Comparable, Hashable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }

    /// Parses PostgreSQL's `pg_lsn` text form: two hexadecimal halves around a slash.
    public init?(_ text: String) {
        let halves = text.split(separator: "/", omittingEmptySubsequences: false)
        guard halves.count == 2, let high = UInt32(halves[0], radix: 16), let low = UInt32(halves[1], radix: 16) else {
            return nil
        }
        value = UInt64(high) << 32 | UInt64(low)
    }

    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    public static func < (lhs: WALPosition, rhs: WALPosition) -> Bool { lhs.value < rhs.value }
}

/// The primary's WAL insert position, sampled over time: what a replica must have replayed
/// to show every write that finished before a given instant, and how far behind a replica is.
///
/// A sample taken at `instant` (the moment its query was sent) is at or past the commit
/// record of every transaction that committed before `instant`. So a replica whose replay
/// position has reached the first sample taken after a write shows that write. Pure logic,
/// kept apart for tests.
public struct PrimaryWALHistory: Sendable {
    public typealias Instant = ContinuousClock.Instant

    public struct Sample: Sendable, Equatable {
        public var instant: Instant
        public var position: WALPosition
    }

    /// Oldest first.
    public private(set) var samples: [Sample] = []
    /// Samples older than this are dropped.
    public let keep: Duration
    /// When sampling began.
    private var firstEver: Instant?

    public init(keep: Duration) {
        self.keep = keep
    }

    public mutating func record(_ position: WALPosition, at instant: Instant) {
        if firstEver == nil { firstEver = instant }
        samples.append(Sample(instant: instant, position: position))
        if let first = samples.firstIndex(where: { instant - $0.instant <= keep }), first > 0 {
            samples.removeFirst(first)
        }
    }

    /// The position a replica must have replayed to show everything committed before
    /// `instant`; nil when no sample has been taken since (only the primary is sure to).
    public func position(coveringWritesBefore instant: Instant) -> WALPosition? {
        samples.first { $0.instant >= instant }?.position
    }

    /// How stale a replica that has replayed up to `replayed` is, at `now`: the age of the
    /// oldest sample it has not reached (zero when it has every sample), which is within one
    /// sampling interval of the truth. When it has reached none of the samples kept, the age
    /// of the oldest sample is a lower bound once sampling has gone on for `keep`; before
    /// that nothing says how far behind it is (nil).
    public func lag(ofReplayed replayed: WALPosition, at now: Instant) -> Duration? {
        guard let oldestMissing = samples.firstIndex(where: { $0.position > replayed }) else { return .zero }
        if oldestMissing == 0 {
            guard let firstEver, now - firstEver >= keep else { return nil }
        }
        return now - samples[oldestMissing].instant
    }
}

/// Streaming replicas of one primary, and which of them a read may use.
///
/// As a `Service`, `run()` checks every `checkInterval` the primary's WAL insert position and
/// each replica's replay position (`pg_last_wal_replay_lsn()`). A replica is used only while
/// it answers, is in recovery and is less than `maxLag` behind; a read that must see a write
/// (read-your-writes) uses it only once it has replayed past the first primary sample taken
/// after that write, else the primary. A read that fails on a replica for a reason of the
/// replica's own (connection lost, shutting down, recovery conflict) marks it down and runs
/// again on the primary; the next successful check brings it back.
public final class PostgresReplicas: Service, Sendable {
    public typealias Instant = ContinuousClock.Instant

    public struct Settings: Sendable {
        /// A replica further behind than this is skipped (`REPLICA_MAX_LAG_MS`).
        public var maxLag: Duration
        /// Between checks of the primary and the replicas.
        public var checkInterval: Duration

        public init(maxLag: Duration = .milliseconds(1000), checkInterval: Duration = .milliseconds(100)) {
            self.maxLag = maxLag
            self.checkInterval = checkInterval
        }

        /// How long after a write its writer's reads still need a check: past it, any replica
        /// in use (lag below `maxLag`, measured at most a check interval ago) has the write.
        public var readYourWritesWindow: Duration { maxLag + checkInterval * 2 + .seconds(1) }
    }

    /// Where a read runs.
    public enum Target: Sendable {
        case primary
        case replica(Int)
    }

    /// One replica as the last check saw it.
    public struct ReplicaState: Sendable {
        /// `host:port/database` of its URL (no user or password), for logs and metrics.
        public var name: String
        public var usable = false
        public var replayed: WALPosition?
        /// Nil until checked, or when further behind than the primary history kept.
        public var lag: Duration?
        /// Why it is not usable, for logs.
        public var problem: String? = "not checked yet"
        /// Reads it has served, and reads it failed that ran again on the primary.
        public var reads = 0
        public var failedReads = 0
    }

    public let primary: PostgresClient
    let clients: [PostgresClient]
    public let settings: Settings
    let logger: Logger
    private let state: NIOLockedValueBox<State>

    struct State {
        var history: PrimaryWALHistory
        var replicas: [ReplicaState]
        var primaryReads = 0
        var rechecks = 0
        var next = 0
    }

    /// `replicas` are pools opened on the replicas' URLs; they close when `run()` ends.
    public init(primary: PostgresClient, replicas: [PostgresClient], settings: Settings, logger: Logger) {
        self.primary = primary
        self.clients = replicas
        self.settings = settings
        self.logger = logger
        let names = replicas.map(\.configuration.endpoint)
        state = NIOLockedValueBox(
            State(
                history: PrimaryWALHistory(keep: settings.readYourWritesWindow + settings.maxLag),
                replicas: names.map { ReplicaState(name: $0) }))
    }

    public var replicaStates: [ReplicaState] { state.withLockedValue { $0.replicas } }
    /// Reads sent to the primary (no replica fresh enough), and replica answers checked again
    /// on the primary.
    public var primaryReads: Int { state.withLockedValue { $0.primaryReads } }
    public var rechecks: Int { state.withLockedValue { $0.rechecks } }

    // MARK: Routing

    /// Where a read should run that must show every write finished before `writtenBefore`
    /// (nil: no such write, or one older than `readYourWritesWindow`).
    public func target(seeingWritesBefore writtenBefore: Instant?, now: Instant = .now) -> Target {
        state.withLockedValue { state in
            var required: WALPosition?
            if let writtenBefore, now - writtenBefore < settings.readYourWritesWindow {
                guard let position = state.history.position(coveringWritesBefore: writtenBefore) else {
                    state.primaryReads += 1
                    return .primary
                }
                required = position
            }
            let count = state.replicas.count
            for offset in 0..<count {
                let index = (state.next + offset) % count
                let replica = state.replicas[index]
                guard replica.usable, let replayed = replica.replayed else { continue }
                if let required, replayed < required { continue }
                state.next = (index + 1) % count
                state.replicas[index].reads += 1
                return .replica(index)
            }
            state.primaryReads += 1
            return .primary
        }
    }

    /// Runs `body` on a connection of a replica that may serve this read, or of the primary.
    /// A replica that fails the read for a reason of its own is marked down and the read runs
    /// again on the primary, so a replica going away costs latency, not a failed request.
    /// `recheckOnPrimary` names other errors a replica's answer is not trusted with (what
    /// lag looks like to the caller, such as "not found"): the read then runs on the primary.
    public func read<Result>(
        seeingWritesBefore writtenBefore: Instant?, recheckOnPrimary: (any Error) -> Bool = { _ in false },
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        switch target(seeingWritesBefore: writtenBefore) {
        case .primary:
            return try await primary.withConnection(body)
        case .replica(let index):
            do {
                return try await clients[index].withConnection(body)
            } catch let error as PostgresError where Self.isReplicaFailure(error) {
                markDown(index, because: error)
                return try await primary.withConnection(body)
            } catch where recheckOnPrimary(error) {
                state.withLockedValue { $0.rechecks += 1 }
                return try await primary.withConnection(body)
            }
        }
    }

    /// Errors that say the replica, not the read, is the problem.
    static func isReplicaFailure(_ error: PostgresError) -> Bool {
        switch error.kind {
        case .connectionFailed, .connectionClosed, .poolTimeout, .poolClosed: return true
        case .server:
            // Connection exceptions, shutdown / starting up, and conflicts with recovery.
            guard let state = error.sqlState else { return false }
            return state.hasPrefix("08") || ["57P01", "57P02", "57P03", "40001", "53300"].contains(state)
        case .decoding, .unexpectedRowCount: return false
        }
    }

    private func markDown(_ index: Int, because error: PostgresError) {
        let wasUsable = state.withLockedValue { state in
            defer {
                state.replicas[index].usable = false
                state.replicas[index].failedReads += 1
                state.replicas[index].problem = "a read failed: \(error.message)"
            }
            return state.replicas[index].usable
        }
        if wasUsable {
            logger.warning(
                "postgres replica failed a read; reads go to the primary until it answers again",
                metadata: ["db.replica": "\(clients[index].configuration.endpoint)", "error": "\(error.message)"])
        }
    }

    // MARK: Checking

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for client in clients { group.addTask { try? await client.run() } }
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                await check()
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.settings.checkInterval) }
                } catch {
                    break
                }
            }
        }
    }

    /// One round: the primary's position, then every replica's, at once.
    public func check() async {
        let sent = ContinuousClock.now
        do {
            let row = try await primary.queryRow("SELECT pg_current_wal_insert_lsn()::text")
            if let position = WALPosition(try row.decode(String.self, column: 0)) {
                state.withLockedValue { $0.history.record(position, at: sent) }
            }
        } catch {
            logger.debug("postgres replica check: primary position unknown", metadata: ["error": "\(error)"])
        }
        await withTaskGroup(of: (Int, Result<WALPosition?, any Error>).self) { group in
            for (index, client) in clients.enumerated() {
                group.addTask {
                    do {
                        let row = try await client.queryRow(
                            "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
                        guard try row.decode(Bool.self, column: 0) else {
                            throw PostgresError(.server, message: "not in recovery (promoted?)")
                        }
                        return (index, .success(WALPosition(try row.decode(String?.self, column: 1) ?? "")))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            for await (index, result) in group { record(result, for: index) }
        }
    }

    private func record(_ result: Result<WALPosition?, any Error>, for index: Int) {
        let now = ContinuousClock.now
        let (before, after) = state.withLockedValue { state -> (ReplicaState, ReplicaState) in
            let before = state.replicas[index]
            var replica = before
            switch result {
            case .success(let replayed?):
                replica.replayed = replayed
                replica.lag = state.history.lag(ofReplayed: replayed, at: now)
                if let lag = replica.lag, lag <= settings.maxLag {
                    replica.usable = true
                    replica.problem = nil
                } else {
                    replica.usable = false
                    replica.problem = "lagging: \(replica.lag.map { "\($0)" } ?? "further than the history kept") behind"
                }
            case .success(nil):
                replica.usable = false
                replica.problem = "no replay position"
            case .failure(let error):
                replica.usable = false
                replica.lag = nil
                replica.problem = "check failed: \((error as? PostgresError)?.message ?? "\(error)")"
            }
            state.replicas[index] = replica
            return (before, replica)
        }
        if before.usable != after.usable {
            if after.usable {
                logger.notice("postgres replica in use", metadata: ["db.replica": "\(after.name)"])
            } else {
                logger.warning(
                    "postgres replica skipped", metadata: ["db.replica": "\(after.name)", "reason": "\(after.problem ?? "")"])
            }
        }
    }
}
