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

    public enum IOMode: String, Sendable, CaseIterable {
        /// Non-blocking libpq; one `epoll` thread per client waits for socket readiness
        /// (Linux; elsewhere this falls back to `.threadPool`).
        case nonBlocking
        /// Blocking libpq calls on a dedicated thread pool, one thread per connection.
        case threadPool
    }

    public init(
        url: String, applicationName: String = "swift-postgres", poolSize: Int = 10,
        poolWaitTimeout: Duration = .seconds(5), connectTimeoutSeconds: Int = 5, ioMode: IOMode = .nonBlocking,
        sessionSettings: [String: String] = [:]
    ) {
        self.url = url
        self.applicationName = applicationName
        self.poolSize = max(1, poolSize)
        self.poolWaitTimeout = poolWaitTimeout
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.ioMode = ioMode
        self.sessionSettings = sessionSettings
    }

    /// The libpq `options` value: `-c name=value` for each setting, with spaces and
    /// backslashes escaped as libpq requires.
    var startupOptions: String {
        let settings = ["TimeZone": "UTC", "DateStyle": "ISO"].merging(sessionSettings) { _, custom in custom }
        return settings.sorted { $0.key < $1.key }.map { name, value in
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: " ", with: "\\ ")
            return "-c \(name)=\(escaped)"
        }.joined(separator: " ")
    }

    /// Where `url` points, for error messages: host, port, database and user as libpq reads
    /// them (defaults filled in), never the password. Nil when libpq cannot parse it.
    public var target: String? {
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
        let host = values["host"] ?? values["hostaddr"] ?? "the local socket"
        let user = values["user"] ?? "the OS user"
        return "host \(host), port \(values["port"] ?? "5432"), database \(values["dbname"] ?? user), user \(user)"
    }
}
