import CLibPQ
import Logging
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One libpq connection.
///
/// Nothing here blocks a Swift concurrency or NIO thread on the network. In the default
/// `.nonBlocking` mode the socket is non-blocking: a statement is sent with
/// `PQsendQueryPrepared`, flushed, and its results are read with `PQconsumeInput` /
/// `PQisBusy` / `PQgetResult` while a `SocketWaiter` thread waits for readiness. In
/// `.threadPool` mode the blocking libpq calls run on a dedicated `NIOThreadPool`.
/// Opening a connection always runs on the thread pool. A connection serves one task at
/// a time: the pool leases it out inside `withConnection` and `withTransaction`.
public final class PostgresConnection: @unchecked Sendable {
    let pointer: OpaquePointer
    let threadPool: NIOThreadPool
    let io: IO
    let logger: Logger
    public let id: Int
    /// SQL text → prepared statement name, for statements prepared on this connection.
    private var statements: [String: String] = [:]
    /// False behind a transaction pooler: every statement is then sent unnamed.
    let namesStatements: Bool
    static let maxCachedStatements = 512

    /// How statements wait for the server (see `PostgresConfiguration.IOMode`).
    enum IO: @unchecked Sendable {
        case threadPool
        #if os(Linux)
        case nonBlocking(SocketWaiter)
        #endif
    }

    /// Which kind of session a connection is opened for (see `PostgresConfiguration.PoolMode`).
    enum Role: Sendable {
        /// One of the pool's connections, to `url`.
        case pooled
        /// A whole session of its own (LISTEN, advisory locks), to `dedicatedURL` or `url`.
        case dedicated
    }

    private init(pointer: OpaquePointer, threadPool: NIOThreadPool, io: IO, id: Int, namesStatements: Bool, logger: Logger) {
        self.pointer = pointer
        self.namesStatements = namesStatements
        self.threadPool = threadPool
        self.io = io
        self.id = id
        self.logger = logger
    }

    deinit {
        #if os(Linux)
        if case .nonBlocking(let waiter) = io { waiter.forget(PQsocket(pointer)) }
        #endif
        PQfinish(pointer)
    }

    // MARK: Opening

    /// Opens a connection from a libpq connection URI or key/value string.
    static func connect(
        configuration: PostgresConfiguration, role: Role, id: Int = 0, threadPool: NIOThreadPool, io: IO,
        logger: Logger
    ) async throws -> PostgresConnection {
        do {
            return try await threadPool.runIfActive {
                try blockingConnect(
                    configuration: configuration, role: role, id: id, threadPool: threadPool, io: io, logger: logger)
            }
        } catch let error as PostgresError {
            throw error
        } catch {
            throw PostgresError(.poolClosed, message: "thread pool is not running: \(error)")
        }
    }

    static func blockingConnect(
        configuration: PostgresConfiguration, role: Role, id: Int, threadPool: NIOThreadPool, io: IO, logger: Logger
    ) throws -> PostgresConnection {
        let throughTransactionPooler = role == .pooled && configuration.poolMode == .transaction
        let url = role == .dedicated ? configuration.dedicatedURL ?? configuration.url : configuration.url
        // Keywords before `dbname` are defaults the URL may override; those after it win.
        var parameters: [(String, String)] = [
            ("application_name", configuration.applicationName),
            ("connect_timeout", String(configuration.connectTimeoutSeconds)),
            // Notice a silently dead server within about a minute, not the kernel's two hours
            // (matters most for a LISTEN connection, which may never send anything).
            ("keepalives", "1"), ("keepalives_idle", "30"), ("keepalives_interval", "10"), ("keepalives_count", "3"),
            ("dbname", url),
            ("client_encoding", "UTF8"),
        ]
        if !throughTransactionPooler { parameters.append(("options", configuration.startupOptions)) }
        let keys = parameters.map { strdup($0.0) }
        let values = parameters.map { strdup($0.1) }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        var keyPointers: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) } + [nil]
        var valuePointers: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        guard let pointer = PQconnectdbParams(&keyPointers, &valuePointers, 1) else {
            throw PostgresError(.connectionFailed, message: "libpq could not allocate a connection")
        }
        guard PQstatus(pointer) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(pointer)).trimmingTrailingNewlines()
            PQfinish(pointer)
            throw PostgresError(.connectionFailed, message: message)
        }
        // Discard NOTICE messages (e.g. "relation already exists, skipping") instead of
        // letting libpq print them on stderr.
        PQsetNoticeProcessor(pointer, { _, _ in }, nil)
        #if os(Linux)
        if case .nonBlocking(let waiter) = io {
            guard PQsetnonblocking(pointer, 1) == 0 else {
                let message = String(cString: PQerrorMessage(pointer)).trimmingTrailingNewlines()
                PQfinish(pointer)
                throw PostgresError(.connectionFailed, message: message)
            }
            waiter.register(PQsocket(pointer))
        }
        #endif
        logger.debug("postgres connection opened", metadata: ["db.connection_id": "\(id)"])
        return PostgresConnection(
            pointer: pointer, threadPool: threadPool, io: io, id: id, namesStatements: !throughTransactionPooler,
            logger: logger)
    }

    // MARK: State

    /// The transaction state reported by libpq after the last command.
    public enum TransactionState: Sendable {
        case idle, active, inTransaction, failedTransaction, unknown
    }

    public var transactionState: TransactionState {
        switch PQtransactionStatus(pointer) {
        case PQTRANS_IDLE: .idle
        case PQTRANS_ACTIVE: .active
        case PQTRANS_INTRANS: .inTransaction
        case PQTRANS_INERROR: .failedTransaction
        default: .unknown
        }
    }

    public var isOK: Bool { PQstatus(pointer) == CONNECTION_OK }

    /// The backend's process id (for `pg_terminate_backend`, logs).
    public var backendPID: Int32 { PQbackendPID(pointer) }

    /// The connection's socket, for waiting on notifications while idle.
    public var socket: Int32 { PQsocket(pointer) }

    /// Checks, without blocking, that an idle connection is still usable: a server that
    /// terminated the backend or restarted leaves the socket readable with an error or EOF,
    /// which `PQconsumeInput` turns into a bad status.
    func checkAliveWithoutBlocking() -> Bool {
        // A terminated backend first sends an ErrorResponse, then closes the socket: keep
        // reading while data is waiting, so the EOF after the message is seen too.
        for _ in 0..<4 {
            guard isOK else { return false }
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 0)
            if ready < 0 { return false }
            if ready == 0 { return true }
            if descriptor.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && descriptor.revents & Int16(POLLIN) == 0 {
                return false
            }
            guard PQconsumeInput(pointer) == 1, PQisBusy(pointer) == 0 else { return false }
        }
        return isOK
    }

    /// Whether data is waiting in the socket, without blocking.
    private func socketIsReadable() -> Bool {
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) != 0
    }

    // MARK: Queries

    /// How a statement is planned.
    public enum Preparation: Sendable {
        /// A named prepared statement, parsed once per connection; after five runs
        /// PostgreSQL may switch to a generic plan that ignores the bound values.
        case named
        /// The unnamed statement: parsed and planned for the actual values on every run
        /// (for queries whose best plan depends on them, like full-text search).
        case unnamed
    }

    /// Runs a query as a named prepared statement (prepared on first use on this connection),
    /// or with `.unnamed`, planned afresh for its values.
    public func query(_ query: PostgresQuery, preparation: Preparation = .named) async throws -> PostgresRows {
        if preparation == .unnamed || !namesStatements { return try await executeUnnamed(query) }
        do {
            return try await executePrepared(query)
        } catch let error as PostgresError where isStalePreparedStatement(error) && transactionState == .idle {
            // The statement was deallocated (DISCARD ALL) or its plan no longer fits the
            // schema: prepare it again once.
            if let name = statements.removeValue(forKey: query.sql) {
                _ = try? await simpleQuery("DEALLOCATE \(name)")
            }
            return try await executePrepared(query)
        }
    }

    /// Runs a statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ query: PostgresQuery) async throws -> Int {
        try await self.query(query).affectedRows
    }

    /// Exactly one row, or `PostgresError.unexpectedRowCount`.
    public func queryRow(_ query: PostgresQuery, preparation: Preparation = .named) async throws -> PostgresRow {
        try await self.query(query, preparation: preparation).one()
    }

    /// Zero or one row; more than one is `PostgresError.unexpectedRowCount`.
    public func queryOptionalRow(_ query: PostgresQuery) async throws -> PostgresRow? {
        try await self.query(query).oneOrNone()
    }

    /// Runs SQL text with the simple-query protocol: no parameters, several statements
    /// allowed (migrations, `BEGIN`, `COMMIT`). Returns the last statement's rows.
    @discardableResult
    public func simpleQuery(_ sql: String) async throws -> PostgresRows {
        switch io {
        case .threadPool:
            return try await onThreadPool { try $0.check(PQexec($0.pointer, sql)) }
        #if os(Linux)
        case .nonBlocking(let waiter):
            guard PQsendQuery(pointer, sql) == 1 else { throw sendError() }
            return try check(try await awaitResult(waiter))
        #endif
        }
    }

    private func onThreadPool<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> R) async throws -> R {
        do {
            return try await threadPool.runIfActive { try body(self) }
        } catch let error as PostgresError {
            throw error
        } catch {
            throw PostgresError(.poolClosed, message: "thread pool is not running: \(error)")
        }
    }

    private func isStalePreparedStatement(_ error: PostgresError) -> Bool {
        error.sqlState == "26000" || (error.sqlState == "0A000" && error.message.contains("cached plan"))
    }

    /// The statement name for `sql` on this connection, and whether it must be prepared first.
    private func statementName(for sql: String) -> (name: String, prepare: Bool) {
        if let cached = statements[sql] { return (cached, false) }
        // Past the cache's bound, use the unnamed statement (prepared on every call).
        return (statements.count < Self.maxCachedStatements ? "s\(statements.count + 1)" : "", true)
    }

    /// A query's parameters as libpq takes them: C strings (freed by `release()`) and OIDs.
    private struct Parameters: @unchecked Sendable {
        let types: [Oid]
        let values: [UnsafeMutablePointer<CChar>?]
        var count: Int32 { Int32(types.count) }

        init(_ binds: PostgresBindings) {
            types = binds.types.map { Oid($0) }
            values = binds.values.map { $0.map { strdup($0) } ?? nil }
        }

        func withValues<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
            values.map { UnsafePointer($0) }.withUnsafeBufferPointer { body($0.baseAddress) }
        }

        func release() { values.forEach { free($0) } }
    }

    private func executePrepared(_ query: PostgresQuery) async throws -> PostgresRows {
        let (name, needsPrepare) = statementName(for: query.sql)
        let parameters = Parameters(query.binds)
        defer { parameters.release() }
        let (types, count) = (parameters.types, parameters.count)
        switch io {
        case .threadPool:
            let sql = query.sql
            return try await onThreadPool { connection in
                if needsPrepare {
                    _ = try connection.check(PQprepare(connection.pointer, name, sql, count, types))
                    connection.remember(name, for: sql)
                }
                return try connection.check(
                    parameters.withValues { PQexecPrepared(connection.pointer, name, count, $0, nil, nil, 0) })
            }
        #if os(Linux)
        case .nonBlocking(let waiter):
            if needsPrepare {
                guard PQsendPrepare(pointer, name, query.sql, count, types) == 1 else { throw sendError() }
                _ = try check(try await awaitResult(waiter))
                remember(name, for: query.sql)
            }
            let sent = parameters.withValues { PQsendQueryPrepared(pointer, name, count, $0, nil, nil, 0) }
            guard sent == 1 else { throw sendError() }
            return try check(try await awaitResult(waiter))
        #endif
        }
    }

    private func executeUnnamed(_ query: PostgresQuery) async throws -> PostgresRows {
        let parameters = Parameters(query.binds)
        defer { parameters.release() }
        let (types, count, sql) = (parameters.types, parameters.count, query.sql)
        switch io {
        case .threadPool:
            return try await onThreadPool { connection in
                try connection.check(
                    parameters.withValues { PQexecParams(connection.pointer, sql, count, types, $0, nil, nil, 0) })
            }
        #if os(Linux)
        case .nonBlocking(let waiter):
            let sent = parameters.withValues { PQsendQueryParams(pointer, sql, count, types, $0, nil, nil, 0) }
            guard sent == 1 else { throw sendError() }
            return try check(try await awaitResult(waiter))
        #endif
        }
    }

    func remember(_ name: String, for sql: String) {
        if !name.isEmpty { statements[sql] = name }
    }

    private func sendError() -> PostgresError {
        let message = String(cString: PQerrorMessage(pointer)).trimmingTrailingNewlines()
        return PostgresError(isOK ? .server : .connectionClosed, message: message)
    }

    #if os(Linux)
    /// Flushes the outgoing query, then reads until libpq has every result of it, waiting
    /// for socket readiness in between. Returns the last result (an error result stops the
    /// statement, so it is the last), or nil when the connection broke.
    private func awaitResult(_ waiter: SocketWaiter) async throws -> OpaquePointer? {
        while true {
            let flushed = PQflush(pointer)
            if flushed == 0 { break }
            if flushed < 0 { throw sendError() }
            try await waiter.wait(for: socket)
            guard PQconsumeInput(pointer) == 1 else { throw sendError() }
        }
        var last: OpaquePointer?
        // The socket was drained before sending, so the first wait ends when the answer
        // arrives. libpq may leave data in the socket after a read, though, and an
        // edge-triggered waiter would not be woken for it: later waits look first.
        var mayHoldData = false
        while true {
            while PQisBusy(pointer) == 1 {
                if !(mayHoldData && socketIsReadable()) { try await waiter.wait(for: socket) }
                guard PQconsumeInput(pointer) == 1 else {
                    if let last { PQclear(last) }
                    throw sendError()
                }
                mayHoldData = true
            }
            guard let result = PQgetResult(pointer) else { break }
            if let last { PQclear(last) }
            last = result
        }
        return last
    }
    #endif

    /// Turns a `PGresult` into rows, or into an error carrying the server's diagnostics.
    func check(_ result: OpaquePointer?) throws -> PostgresRows {
        guard let result else {
            let message = String(cString: PQerrorMessage(pointer)).trimmingTrailingNewlines()
            throw PostgresError(isOK ? .server : .connectionClosed, message: message)
        }
        let handle = ResultHandle(result)
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return PostgresRows(handle: handle)
        default:
            func field(_ code: Character) -> String? {
                guard let value = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
                return String(cString: value)
            }
            let sqlState = field("C")
            let message = field("M") ?? String(cString: PQresultErrorMessage(result)).trimmingTrailingNewlines()
            let kind: PostgresError.Kind = (sqlState == nil && !isOK) ? .connectionClosed : .server
            throw PostgresError(
                kind, message: message, sqlState: sqlState, detail: field("D"), hint: field("H"),
                constraint: field("n"), table: field("t"), column: field("c"))
        }
    }

    // MARK: Notifications

    /// A notification received from `LISTEN`.
    public struct Notification: Sendable {
        public var channel: String
        public var payload: String
        public var backendPID: Int32
    }

    /// Reads whatever the server has sent without blocking and returns the notifications
    /// received so far.
    public func consumeNotifications() throws -> [Notification] {
        guard PQconsumeInput(pointer) == 1 else {
            throw PostgresError(.connectionClosed, message: String(cString: PQerrorMessage(pointer)).trimmingTrailingNewlines())
        }
        var notifications: [Notification] = []
        while let notify = PQnotifies(pointer) {
            let value = notify.pointee
            notifications.append(
                Notification(
                    channel: String(cString: value.relname), payload: String(cString: value.extra),
                    backendPID: value.be_pid))
            PQfreemem(notify)
        }
        return notifications
    }

    /// Waits, while the connection is otherwise idle, until notifications arrive (after
    /// `LISTEN`) and returns them; may return an empty array, e.g. after `interruptWait()`.
    /// Throws when the connection breaks.
    public func waitForNotifications() async throws -> [Notification] {
        let pending = try consumeNotifications()
        if !pending.isEmpty || socketIsReadable() { return pending }
        switch io {
        case .threadPool:
            try await onThreadPool { connection in
                var descriptor = pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0)
                _ = poll(&descriptor, 1, 1000)  // wake up now and then to notice interruptions
            }
        #if os(Linux)
        case .nonBlocking(let waiter):
            try await waiter.wait(for: socket)
        #endif
        }
        return try consumeNotifications()
    }

    /// Ends a pending `waitForNotifications()` early (used to stop a listener).
    public func interruptWait() {
        #if os(Linux)
        if case .nonBlocking(let waiter) = io { waiter.interrupt(socket) }
        #endif
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var text = self
        while text.last == "\n" || text.last == " " { text.removeLast() }
        return text
    }
}
