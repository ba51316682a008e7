import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A bounded pool of PostgreSQL connections; the entry point of this library.
///
/// Connections open lazily up to `poolSize`; a task that finds none free waits in a FIFO
/// queue for at most `poolWaitTimeout`. A connection returned inside a transaction is
/// rolled back, a broken one is closed and replaced, and an idle one whose backend went
/// away (server restart, `pg_terminate_backend`) is noticed before it is leased again.
///
/// As a `Service`, `run()` waits for graceful shutdown and then closes the pool.
public final class PostgresClient: Service, Sendable {
    public let configuration: PostgresConfiguration
    let logger: Logger
    /// Threads that run libpq's blocking calls: opening connections, and in `.threadPool`
    /// mode every statement (one thread per connection plus one spare).
    let threadPool: NIOThreadPool
    let io: PostgresConnection.IO
    private let state: NIOLockedValueBox<PoolState>

    struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<LeaseAction, any Error>
        /// Fails the wait after `poolWaitTimeout`; cancelled when a connection comes first.
        var timeout: Scheduled<Void>?

        func resume(with result: Result<LeaseAction, any Error>) {
            timeout?.cancel()
            continuation.resume(with: result)
        }
    }

    enum LeaseAction: @unchecked Sendable {
        case use(PostgresConnection)
        case open
    }

    struct PoolState {
        var idle: [PostgresConnection] = []
        /// Connections open or being opened, leased or idle.
        var open = 0
        var waiters: [Waiter] = []
        var waits = 0
        var waitTime = Duration.zero
        var nextID = 1
        var closed = false
    }

    public init(configuration: PostgresConfiguration, logger: Logger = Logger(label: "postgres")) {
        self.configuration = configuration
        self.logger = logger
        switch configuration.ioMode {
        case .threadPool:
            self.threadPool = NIOThreadPool(numberOfThreads: configuration.poolSize + 1)
            self.io = .threadPool
        case .nonBlocking:
            // Threads only open connections; statements never occupy one.
            self.threadPool = NIOThreadPool(numberOfThreads: 2)
            #if os(Linux)
            self.io = .nonBlocking(SocketWaiter())
            #else
            self.io = .threadPool
            #endif
        }
        self.threadPool.start()
        self.state = NIOLockedValueBox(PoolState())
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes idle connections, fails waiting tasks and stops the thread pool.
    public func shutdown() async {
        let (idle, waiters) = state.withLockedValue { state -> ([PostgresConnection], [Waiter]) in
            state.closed = true
            defer {
                state.idle = []
                state.waiters = []
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters {
            waiter.resume(with: .failure(PostgresError(.poolClosed, message: "pool shut down")))
        }
        _ = idle  // connections close (PQfinish) when released
        try? await threadPool.shutdownGracefully()
        #if os(Linux)
        if case .nonBlocking(let waiter) = io { waiter.shutdown() }
        #endif
    }

    // MARK: Leasing

    /// Leases a connection for the duration of `body`.
    public func withConnection<Result>(
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let connection = try await lease()
        let result: Result
        do {
            result = try await body(connection)
        } catch {
            await release(connection)
            throw error
        }
        await release(connection)
        return result
    }

    /// Runs `body` in a transaction: COMMIT when it returns, ROLLBACK when it throws.
    public func withTransaction<Result>(
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await withConnection { connection in
            try await connection.simpleQuery("BEGIN")
            let result: Result
            do {
                result = try await body(connection)
            } catch {
                if connection.isOK { _ = try? await connection.simpleQuery("ROLLBACK") }
                throw error
            }
            if connection.transactionState == .failedTransaction {
                // A statement failed and the body swallowed the error: COMMIT would silently
                // roll back, so make the failure visible.
                _ = try? await connection.simpleQuery("ROLLBACK")
                throw PostgresError(.server, message: "transaction aborted by an earlier error")
            }
            try await connection.simpleQuery("COMMIT")
            return result
        }
    }

    // MARK: Shortcuts that lease a connection for one statement

    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await withConnection { try await $0.query(query) }
    }

    @discardableResult
    public func execute(_ query: PostgresQuery) async throws -> Int {
        try await withConnection { try await $0.execute(query) }
    }

    public func queryRow(_ query: PostgresQuery) async throws -> PostgresRow {
        try await withConnection { try await $0.queryRow(query) }
    }

    public func queryOptionalRow(_ query: PostgresQuery) async throws -> PostgresRow? {
        try await withConnection { try await $0.queryOptionalRow(query) }
    }

    /// Opens a connection outside the pool (for LISTEN, session advisory locks or session
    /// settings), to `configuration.dedicatedURL` when set; it uses the pool's threads and
    /// closes when released by the caller.
    public func openDedicatedConnection() async throws -> PostgresConnection {
        try await PostgresConnection.connect(
            configuration: configuration, role: .dedicated, id: 0, threadPool: threadPool, io: io, logger: logger)
    }

    /// The names of the `effectiveSessionSettings` a pooled session does not have. Behind a
    /// transaction pooler the proxy must set them (PgBouncer's `connect_query`); this tells
    /// whether it does. Each value is compared as PostgreSQL shows it, so `2000ms` and `2s` agree.
    public func sessionSettingsMissing() async throws -> [String] {
        try await withTransaction { connection in
            var missing: [String] = []
            for (name, value) in configuration.effectiveSessionSettings.sorted(by: { $0.key < $1.key }) {
                let current = try await connection.queryRow("SELECT current_setting(\(name), true)")
                    .decode(String?.self, column: 0)
                // Set for this transaction only, to read the wanted value back in PostgreSQL's form.
                let wanted = try await connection.queryRow("SELECT set_config(\(name), \(value), true)")
                    .decode(String.self, column: 0)
                if current != wanted { missing.append(name) }
            }
            return missing
        }
    }

    /// Numbers for metrics and tests.
    public struct Statistics: Sendable {
        public var open: Int
        public var idle: Int
        public var waiting: Int
        /// Since the client started: how many acquisitions found no free connection, and
        /// how long they waited in all.
        public var waits: Int
        public var waitTime: Duration
    }

    public var statistics: Statistics {
        state.withLockedValue {
            Statistics(open: $0.open, idle: $0.idle.count, waiting: $0.waiters.count, waits: $0.waits, waitTime: $0.waitTime)
        }
    }

    func lease() async throws -> PostgresConnection {
        while true {
            switch try await nextLeaseAction() {
            case .use(let connection):
                if connection.checkAliveWithoutBlocking() { return connection }
                logger.debug("postgres dropping dead idle connection", metadata: ["db.connection_id": "\(connection.id)"])
                discarded(connection)
                continue
            case .open:
                let id = state.withLockedValue { state in
                    defer { state.nextID += 1 }
                    return state.nextID
                }
                do {
                    return try await PostgresConnection.connect(
                        configuration: configuration, role: .pooled, id: id, threadPool: threadPool, io: io,
                        logger: logger)
                } catch {
                    openFailed()
                    throw error
                }
            }
        }
    }

    private func nextLeaseAction() async throws -> LeaseAction {
        // Fast path, no allocation: an idle connection or a free slot.
        let immediate: LeaseAction? = try state.withLockedValue { state in
            if state.closed { throw PostgresError(.poolClosed, message: "pool shut down") }
            if let connection = state.idle.popLast() { return .use(connection) }
            if state.open < configuration.poolSize {
                state.open += 1
                return .open
            }
            return nil
        }
        if let immediate { return immediate }
        return try await waitForLeaseAction()
    }

    private func waitForLeaseAction() async throws -> LeaseAction {
        let start = ContinuousClock.now
        defer {
            let waited = ContinuousClock.now - start
            state.withLockedValue { state in
                state.waits += 1
                state.waitTime += waited
            }
        }
        let waiterID = state.withLockedValue { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        let timeout = configuration.poolWaitTimeout
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<LeaseAction, any Error>) in
                // Decide again under the lock: a connection may have come back meanwhile.
                let immediate: Result<LeaseAction, PostgresError>? = state.withLockedValue { state in
                    if state.closed { return .failure(PostgresError(.poolClosed, message: "pool shut down")) }
                    if let connection = state.idle.popLast() { return .success(.use(connection)) }
                    if state.open < configuration.poolSize {
                        state.open += 1
                        return .success(.open)
                    }
                    state.waiters.append(Waiter(id: waiterID, continuation: continuation))
                    return nil
                }
                if let immediate {
                    continuation.resume(with: immediate)
                    return
                }
                // A timer on an event loop, not a task per waiter.
                let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(timeout)) {
                    [weak self] () -> Void in
                    self?.failWaiter(
                        waiterID,
                        with: PostgresError(
                            .poolTimeout, message: "no database connection became free within \(timeout)"))
                }
                let waiting = state.withLockedValue { state in
                    guard let index = state.waiters.firstIndex(where: { $0.id == waiterID }) else { return false }
                    state.waiters[index].timeout = timer
                    return true
                }
                if !waiting { timer.cancel() }
            }
        } onCancel: {
            failWaiter(waiterID, with: CancellationError())
        }
    }

    private func failWaiter(_ id: Int, with error: any Error) {
        let waiter = state.withLockedValue { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.resume(with: .failure(error))
    }

    /// Returns a connection: kept when idle, rolled back when left inside a transaction,
    /// closed when broken.
    func release(_ connection: PostgresConnection) async {
        switch connection.transactionState {
        case .idle where connection.isOK:
            returnToPool(connection)
        case .inTransaction, .failedTransaction:
            if (try? await connection.simpleQuery("ROLLBACK")) != nil, connection.transactionState == .idle {
                returnToPool(connection)
            } else {
                discarded(connection)
            }
        default:
            discarded(connection)
        }
    }

    private func returnToPool(_ connection: PostgresConnection) {
        let waiter = state.withLockedValue { state -> Waiter? in
            if state.closed {
                state.open -= 1
                return nil
            }
            if state.waiters.isEmpty {
                state.idle.append(connection)
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume(with: .success(.use(connection)))
    }

    /// A connection was closed: its slot goes to the first waiter, who opens a new one.
    private func discarded(_ connection: PostgresConnection) {
        logger.debug("postgres connection discarded", metadata: ["db.connection_id": "\(connection.id)"])
        openFailed()
    }

    private func openFailed() {
        let waiter = state.withLockedValue { state -> Waiter? in
            if state.waiters.isEmpty || state.closed {
                state.open -= 1
                return nil
            }
            return state.waiters.removeFirst()  // keeps the slot counted in `open`
        }
        waiter?.resume(with: .success(.open))
    }
}
