import CLibPQ

/// How to reach the database and size the pool.
public struct PostgresConfiguration: Sendable {
    /// A libpq connection URI (`postgresql://user:pass@host:5432/db`) or key/value string.
    public var url: String
    public var applicationName: String
    /// Maximum number of open connections in the pool.
    public var poolSize: Int
    /// How long a task waits for a free connection before failing with `.poolTimeout`.
    public var poolWaitTimeout: Duration
    public var connectTimeoutSeconds: Int
    /// How statements wait for the server; neither mode blocks Swift concurrency or NIO threads.
    public var ioMode: IOMode
    /// Run-time parameters every connection starts with (`SET name = value` at connect time,
    /// sent as libpq `options`), e.g. `["statement_timeout": "30s"]` or a custom `app.flag`.
    public var sessionSettings: [String: String]
    /// What the pool's connections reach: PostgreSQL sessions of their own, or a
    /// transaction-pooling proxy (see `PoolMode`).
    public var poolMode: PoolMode
    /// Where dedicated connections go (`openDedicatedConnection`: LISTEN, session advisory
    /// locks, session settings); nil: `url`. Must reach PostgreSQL directly (or through a
    /// session-pooling proxy) when `poolMode` is `.transaction`.
    public var dedicatedURL: String?

    public enum IOMode: String, Sendable, CaseIterable {
        /// Non-blocking libpq; one `epoll` thread per client waits for socket readiness
        /// (Linux; elsewhere this falls back to `.threadPool`).
        case nonBlocking
        /// Blocking libpq calls on a dedicated thread pool, one thread per connection.
        case threadPool
    }

    public enum PoolMode: String, Sendable, CaseIterable {
        /// Each pooled connection is one PostgreSQL session: directly, or through a proxy in
        /// session pooling mode. Statements are prepared once per connection and named.
        case session
        /// The pool reaches PostgreSQL through a proxy in transaction pooling mode (PgBouncer
        /// `pool_mode = transaction`), where consecutive transactions of one connection may
        /// run on different server sessions. So nothing may outlive a transaction: statements
        /// are sent as the unnamed statement (parsed on every run), and `sessionSettings` are
        /// not sent at connect (PgBouncer refuses the `options` startup parameter) but must be
        /// set by the proxy (PgBouncer's `connect_query`) or on the role. Dedicated
        /// connections go to `dedicatedURL` and keep their settings.
        case transaction
    }

    public init(
        url: String, applicationName: String = "swift-postgres", poolSize: Int = 10,
        poolWaitTimeout: Duration = .seconds(5), connectTimeoutSeconds: Int = 5, ioMode: IOMode = .nonBlocking,
        sessionSettings: [String: String] = [:], poolMode: PoolMode = .session, dedicatedURL: String? = nil
    ) {
        self.url = url
        self.applicationName = applicationName
        self.poolSize = max(1, poolSize)
        self.poolWaitTimeout = poolWaitTimeout
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.ioMode = ioMode
        self.sessionSettings = sessionSettings
        self.poolMode = poolMode
        self.dedicatedURL = dedicatedURL
    }

    /// The run-time parameters a session starts with: `sessionSettings` plus UTC and ISO dates.
    public var effectiveSessionSettings: [String: String] {
        ["TimeZone": "UTC", "DateStyle": "ISO"].merging(sessionSettings) { _, custom in custom }
    }

    /// The libpq `options` value: `-c name=value` for each setting, with spaces and
    /// backslashes escaped as libpq requires.
    var startupOptions: String {
        effectiveSessionSettings.sorted { $0.key < $1.key }.map { name, value in
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: " ", with: "\\ ")
            return "-c \(name)=\(escaped)"
        }.joined(separator: " ")
    }

    /// Where `url` points, for error messages: host, port, database and user as libpq reads
    /// them (defaults filled in), never the password. Nil when libpq cannot parse it.
    public var target: String? {
        guard let values = Self.connectionValues(url) else { return nil }
        let host = values["host"] ?? values["hostaddr"] ?? "the local socket"
        let user = values["user"] ?? "the OS user"
        return "host \(host), port \(values["port"] ?? "5432"), database \(values["dbname"] ?? user), user \(user)"
    }

    /// `host:port/database` of `url`, for metric labels and logs (no user, no password).
    public var endpoint: String {
        guard let values = Self.connectionValues(url) else { return "?" }
        let host = values["host"] ?? values["hostaddr"] ?? "local"
        return "\(host):\(values["port"] ?? "5432")/\(values["dbname"] ?? values["user"] ?? "")"
    }

    /// The keywords libpq reads from a connection string, or nil when it cannot parse it.
    static func connectionValues(_ url: String) -> [String: String]? {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &error) else {
            if let error { PQfreemem(error) }
            return nil
        }
        defer { PQconninfoFree(options) }
        var values: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { values[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        return values
    }
}
