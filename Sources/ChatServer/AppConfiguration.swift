import ChatCore
import Foundation
import Logging
import Postgres

/// Every setting of the server, by component, read from the environment in one place
/// (`fromEnvironment`). Each default is written once, as the initial value of its field;
/// durations are `Duration`s; secrets are `Secret`s, which never print. `.env.example`
/// lists every key the code reads (a test checks it), with these defaults.
public struct AppConfiguration: Sendable {
    public var http = HTTPSettings()
    public var logging = LoggingSettings()
    public var database: DatabaseSettings
    public var auth: AuthSettings
    public var uploads = UploadSettings()
    public var realtime = RealtimeSettings()
    public var retention = RetentionSettings()
    public var rateLimits = RateLimitSettings()

    public init(databaseURL: String, jwtSecret: String) {
        database = DatabaseSettings(url: Secret(databaseURL))
        auth = AuthSettings(jwtSecret: Secret(jwtSecret))
    }

    /// A value that must not reach logs or error messages (`description` hides it).
    public struct Secret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        public var value: String
        public init(_ value: String) { self.value = value }
        public var description: String { "<secret>" }
        public var debugDescription: String { "<secret>" }
    }

    /// Listening, shutdown and what the HTTP layer adds to every answer.
    public struct HTTPSettings: Sendable {
        /// `HOST`, `PORT`.
        public var host = "0.0.0.0"
        public var port = 8000
        /// A connection idle this long (no request arriving, a body or first request head
        /// that stops arriving) is closed (`HTTP_IDLE_TIMEOUT_SECONDS`).
        public var idleTimeout = Duration.seconds(30)
        /// On SIGTERM: how long WebSocket clients get to take their 1001 close before their
        /// connections are cut, and then in-flight requests to finish (`SHUTDOWN_GRACE_SECONDS`).
        public var shutdownGrace = Duration.seconds(10)
        /// Browser origins allowed to call the API and open sockets (`CORS_ALLOWED_ORIGINS`).
        public var cors = CORSPolicy.off
        /// One info line per answered request (`ACCESS_LOG`).
        public var accessLog = true
        /// Bearer token `/metrics` requires (`METRICS_TOKEN`); nil: clients on this host only.
        public var metricsToken: Secret?
        public init() {}
    }

    /// `LOG_LEVEL`, `LOG_FORMAT`.
    public struct LoggingSettings: Sendable {
        public var level = Logger.Level.info
        public var format = LogFormat.text
        public init() {}
    }

    /// The database: where it is, the pool, the limits on every session, the send path's
    /// batching and the migrations.
    public struct DatabaseSettings: Sendable {
        /// `DATABASE_URL`, a libpq URI or key=value string (it may hold a password).
        public var url: Secret
        /// `DATABASE_LISTEN_URL`: where the sessions that need a whole PostgreSQL session of
        /// their own go (LISTEN, the NOTIFY sender, the migrations' advisory lock); nil:
        /// `url`. Required, and must reach PostgreSQL directly, when `url` goes through a
        /// transaction-pooling proxy.
        public var listenURL: Secret?
        /// `DATABASE_POOL_MODE`: `session` (default; `url` reaches PostgreSQL, or a proxy in
        /// session mode) or `transaction` (`url` is PgBouncer with `pool_mode = transaction`:
        /// no named prepared statements, session settings come from the proxy; README).
        public var poolMode = PostgresConfiguration.PoolMode.session
        /// `DATABASE_REPLICA_URLS`: streaming replicas of the primary, comma-separated, for
        /// the reads clients page through (README, "Read replicas").
        public var replicaURLs: [Secret] = []
        /// A replica further behind the primary than this is skipped (`REPLICA_MAX_LAG_MS`);
        /// between checks of the replicas' replay positions (`REPLICA_CHECK_INTERVAL_MS`).
        public var replicaMaxLag = Duration.milliseconds(1000)
        public var replicaCheckInterval = Duration.milliseconds(100)
        /// At most this many connections per instance (`DB_POOL_SIZE`); a request waits at most
        /// `poolTimeout` for one, then gets 503 (`DB_POOL_TIMEOUT_MS`).
        public var poolSize = 10
        public var poolTimeout = Duration.milliseconds(5000)
        /// Longest wait for a row lock before the statement fails and the request answers 503
        /// (`DB_LOCK_TIMEOUT_MS`, PostgreSQL's `lock_timeout`).
        public var lockTimeout = Duration.milliseconds(2000)
        /// Longest any statement runs (`DB_STATEMENT_TIMEOUT_MS`, `statement_timeout`).
        public var statementTimeout = Duration.milliseconds(30_000)
        /// A session idle inside a transaction this long (a frozen or dead instance) is ended
        /// by PostgreSQL, releasing its locks (`DB_IDLE_IN_TRANSACTION_TIMEOUT_MS`).
        public var idleInTransactionTimeout = Duration.milliseconds(5000)
        /// Send batches written at once, each on one pooled connection (`SEND_BATCH_LANES`; the
        /// waiting lane for locked rooms comes on top),
        /// and the most messages one batch statement stores (`SEND_BATCH_MAX`).
        public var sendLanes = 1
        public var sendBatchMax = 128
        /// Apply pending migrations when `serve` starts (`MIGRATE_ON_START`).
        public var migrateOnStart = true
        /// Numbered `.sql` files to migrate with instead of those built in (`MIGRATIONS_DIR`).
        public var migrationsDirectory: String?

        public init(url: Secret) {
            self.url = url
        }

        /// The settings every server session starts with: no session waits on a lock, or
        /// holds one while idle, for long; the server announces its own changes after
        /// commit (sql/0004_realtime.sql); the planner prices random reads as on SSDs
        /// (`random_page_cost` 1.1 instead of 4: with 4 it walked the primary key past a busy
        /// room's newer rows to find a quiet room's newest messages, 15 ms instead of 0.1 ms
        /// per history page); and no statement is JIT-compiled (a room list page of 100 rooms
        /// crossed the JIT threshold and took 65 ms instead of 2.3 ms; docs/scaling.md).
        /// Behind a transaction pooler the proxy sets them (README, "PgBouncer").
        public var serverSessionSettings: [String: String] {
            [
                "lock_timeout": "\(lockTimeout.milliseconds)ms",
                "statement_timeout": "\(statementTimeout.milliseconds)ms",
                "idle_in_transaction_session_timeout": "\(idleInTransactionTimeout.milliseconds)ms",
                "chat.announces_own_changes": "on",
                "random_page_cost": "1.1",
                "jit": "off",
            ]
        }
    }

    /// Tokens and passwords.
    public struct AuthSettings: Sendable {
        /// HS256 secret for access tokens (`JWT_SECRET`); required unless `developmentMode`.
        public var jwtSecret: Secret
        /// `CHAT_ENV=development`: allows a built-in JWT secret. Never in production.
        public var developmentMode = false
        /// Lifetime of tokens issued by /auth/login (`ACCESS_TOKEN_TTL_SECONDS`).
        public var tokenLifetime = Duration.seconds(86_400)
        /// bcrypt cost (`BCRYPT_COST`); threads that hash (`BCRYPT_THREADS`) and how many hashes
        /// may wait or run before a sign-in is refused with 503 (`BCRYPT_MAX_PENDING`).
        public var bcryptCost = 12
        public var bcryptThreads = 2
        public var bcryptMaxPending = 16
        /// How long a token's user (name, active flag) is reused without a query
        /// (`AUTH_CACHE_MS`); an operator's deactivation takes effect within it. 0: no cache.
        public var userCacheLifetime = Duration.milliseconds(1000)

        public init(jwtSecret: Secret) {
            self.jwtSecret = jwtSecret
        }
    }

    /// Uploaded files.
    public struct UploadSettings: Sendable {
        /// `UPLOAD_DIR`: one directory shared by every instance.
        public var directory = "./uploads"
        /// Prefix of `file_url` (`PUBLIC_BASE_URL`, e.g. `https://chat.example.com`); empty: relative URLs.
        public var publicBaseURL = ""
        /// `MAX_UPLOAD_BYTES`.
        public var maxBytes = 20 * 1024 * 1024
        public init() {}
    }

    /// The retention job and the change log's window.
    public struct RetentionSettings: Sendable {
        /// Time between retention runs (`RETENTION_INTERVAL_SECONDS`); nil (0): no job.
        public var interval: Duration? = .seconds(3600)
        /// Messages deleted per retention transaction (`RETENTION_BATCH_SIZE`).
        public var batchSize = 500
        /// How long a room's change log keeps edits, deletes, read marks and membership
        /// changes for `last_seq` catch-up (`CHANGE_LOG_RETENTION_DAYS`); older cursors get
        /// `resync_required`.
        public var changeLogWindow = Duration.seconds(7 * 86_400)
        public init() {}
    }

    /// Token-bucket rate limits (README, "Limits"); 0 turns one off. Kept per instance.
    public struct RateLimitSettings: Sendable {
        /// Failed logins per user name per minute (`RATE_LIMIT_LOGIN_FAILURES_PER_MINUTE`).
        public var loginFailuresPerMinute = 10
        /// Failed logins per client address per minute (`RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE`).
        public var loginFailuresPerAddressPerMinute = 60
        /// Registrations per client address per minute (`RATE_LIMIT_REGISTRATIONS_PER_ADDRESS_PER_MINUTE`; off by default).
        public var registrationsPerAddressPerMinute = 0
        /// Messages per user per second, REST and WebSocket (`RATE_LIMIT_SENDS_PER_SECOND`; off by
        /// default), in bursts of up to `RATE_LIMIT_SEND_BURST` (default: twice the rate).
        public var sendsPerSecond = 0
        public var sendBurst: Int?
        /// WebSocket `typing` frames per socket per second (`WS_TYPING_PER_SECOND`, bursts of 5):
        /// more are dropped.
        public var typingPerSecond = 2
        /// Other client frames (read, ping, bad frames) per socket per second (`WS_FRAMES_PER_SECOND`,
        /// bursts of twice that): more get one `error` frame and are not handled.
        public var framesPerSecond = 20
        /// Take the client address from the last `X-Forwarded-For` entry (`TRUST_FORWARDED_FOR`):
        /// only behind a proxy that sets it.
        public var trustForwardedFor = false

        /// The send bucket's size.
        public var effectiveSendBurst: Int { sendBurst ?? 2 * sendsPerSecond }

        public init() {}
    }

    /// WebSocket and cross-instance delivery settings.
    public struct RealtimeSettings: Sendable {
        /// Identifies this process in `chat_instances` (`INSTANCE_ID`; default host, pid and a random part).
        public var instanceID = "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        /// Largest client frame handled; larger ones get an `error` frame (`WS_MAX_MESSAGE_BYTES`).
        public var maxInboundMessageBytes = 64 * 1024
        /// Unsent frames / bytes a socket may queue before it is closed with 4408
        /// (`WS_OUTBOUND_QUEUE_FRAMES`, `WS_OUTBOUND_QUEUE_BYTES`).
        public var outboundQueueFrames = 1000
        public var outboundQueueBytes = 4 * 1024 * 1024
        /// Between server pings; a socket that misses a pong for as long is dropped (`WS_PING_SECONDS`).
        public var pingInterval = Duration.seconds(30)
        /// Presence heartbeat period and expiry (`PRESENCE_HEARTBEAT_SECONDS`, `PRESENCE_EXPIRY_SECONDS`).
        public var heartbeat = Duration.seconds(5)
        public var presenceExpiry = Duration.seconds(20)
        /// Between checks for messages whose wake-up was lost (`REALTIME_POLL_SECONDS`).
        public var pollInterval = Duration.seconds(2)
        /// Messages read per query when catching a socket up (`WS_CATCH_UP_BATCH`).
        public var catchUpBatch = 200
        /// Most WebSockets one user may hold open on one instance; more are closed with 4429
        /// (`WS_MAX_SOCKETS_PER_USER`).
        public var maxSocketsPerUser = 100
        /// How long a change waits for others to share its NOTIFY (`NOTIFY_BATCH_WINDOW_MS`).
        public var notifyBatchWindow = Duration.zero
        /// `ANNOUNCE_CHANGES=false` stops this instance from sending NOTIFY: its writes then
        /// reach sockets (its own and other instances') only through the room-head poll.
        /// For measuring what the notifications cost; never in production.
        public var announceChanges = true

        public init() {}
    }

    public static let developmentJWTSecret = "development-only-secret-do-not-use-in-production"

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// What `chat-server migrate` needs: no secret, no server settings.
    public struct MigrationSettings: Sendable {
        public var databaseURL: String
        public var logging: LoggingSettings
        public var migrationsDirectory: String?

        /// `DATABASE_LISTEN_URL`: the migrations' session (it holds an advisory lock) goes there.
        public var listenURL: String?

        public static func fromEnvironment(_ environment: [String: String]) throws -> MigrationSettings {
            try read(EnvironmentReader(environment))
        }

        /// Checks that `url` (the value of `key`) is a libpq connection string for PostgreSQL.
        static func checkDatabaseURL(_ url: String, key: String) throws {
            if let scheme = url.range(of: "://").map({ url[..<$0.lowerBound].lowercased() }),
                !["postgresql", "postgres"].contains(scheme)
            {
                throw Invalid(
                    description: "\(key) must be a PostgreSQL URI (postgresql://user:password@host:port/database), not \(scheme)://")
            }
            guard PostgresConfiguration(url: url).target != nil else {
                throw Invalid(
                    description: "\(key) is not a libpq connection string (postgresql://user:password@host:port/database or key=value pairs)")
            }
        }

        static func read(_ env: EnvironmentReader) throws -> MigrationSettings {
            guard let databaseURL = env.value("DATABASE_URL") else {
                throw Invalid(description: "DATABASE_URL is required (a libpq URI such as postgresql://user@host/db)")
            }
            try checkDatabaseURL(databaseURL, key: "DATABASE_URL")
            let listenURL = env.value("DATABASE_LISTEN_URL")
            if let listenURL { try checkDatabaseURL(listenURL, key: "DATABASE_LISTEN_URL") }
            var logging = LoggingSettings()
            if let text = env.value("LOG_LEVEL") {
                guard let level = Logger.Level(rawValue: text.lowercased()) else {
                    throw Invalid(description: "LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
                }
                logging.level = level
            }
            logging.format = try LogFormat(parsing: env.value("LOG_FORMAT"))
            return MigrationSettings(
                databaseURL: databaseURL, logging: logging, migrationsDirectory: env.value("MIGRATIONS_DIR"),
                listenURL: listenURL)
        }
    }

    /// Every environment variable the server reads (for `--help`, and the test that
    /// `.env.example` lists exactly these).
    public static let environmentKeys: [String] = {
        let reader = EnvironmentReader(["DATABASE_URL": "postgresql:///x", "JWT_SECRET": String(repeating: "k", count: 32)])
        _ = try? read(reader)
        return reader.keysRead
    }()

    /// Reads the configuration from environment variables; unset keys keep their defaults.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> AppConfiguration
    {
        try read(EnvironmentReader(environment))
    }

    static func read(_ env: EnvironmentReader) throws -> AppConfiguration {
        let migration = try MigrationSettings.read(env)
        let development = ["development", "dev"].contains(env.value("CHAT_ENV")?.lowercased() ?? "")
        let secret: String
        if let configured = env.value("JWT_SECRET") {
            guard configured.utf8.count >= 32 else {
                throw Invalid(description: "JWT_SECRET must be at least 32 bytes (HS256 keys shorter than the hash are weak)")
            }
            secret = configured
        } else if development {
            secret = developmentJWTSecret
        } else {
            throw Invalid(description: "JWT_SECRET is required (set CHAT_ENV=development to use a built-in one)")
        }
        var c = AppConfiguration(databaseURL: migration.databaseURL, jwtSecret: secret)
        c.logging = migration.logging
        c.auth.developmentMode = development

        c.http.host = env.value("HOST") ?? c.http.host
        c.http.port = try env.int("PORT", c.http.port, 0...65535)
        c.http.idleTimeout = try env.seconds("HTTP_IDLE_TIMEOUT_SECONDS", c.http.idleTimeout, 1...3600)
        c.http.shutdownGrace = try env.seconds("SHUTDOWN_GRACE_SECONDS", c.http.shutdownGrace, 0...600)
        c.http.cors = try CORSPolicy(parsing: env.value("CORS_ALLOWED_ORIGINS"))
        c.http.accessLog = try env.bool("ACCESS_LOG", c.http.accessLog)
        c.http.metricsToken = env.value("METRICS_TOKEN").map(Secret.init)

        c.database.migrationsDirectory = migration.migrationsDirectory
        c.database.listenURL = migration.listenURL.map(Secret.init)
        if let mode = env.value("DATABASE_POOL_MODE") {
            guard let parsed = PostgresConfiguration.PoolMode(rawValue: mode.lowercased()) else {
                throw Invalid(description: "DATABASE_POOL_MODE must be session or transaction")
            }
            c.database.poolMode = parsed
        }
        if c.database.poolMode == .transaction && c.database.listenURL == nil {
            throw Invalid(
                description: "DATABASE_POOL_MODE=transaction needs DATABASE_LISTEN_URL: LISTEN and the migrations' lock need a PostgreSQL session of their own, not a transaction pooler")
        }
        let replicas = (env.value("DATABASE_REPLICA_URLS") ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
        for url in replicas { try MigrationSettings.checkDatabaseURL(url, key: "DATABASE_REPLICA_URLS") }
        c.database.replicaURLs = replicas.map(Secret.init)
        c.database.replicaMaxLag = try env.milliseconds("REPLICA_MAX_LAG_MS", c.database.replicaMaxLag, 1...3_600_000)
        c.database.replicaCheckInterval = try env.milliseconds(
            "REPLICA_CHECK_INTERVAL_MS", c.database.replicaCheckInterval, 10...60_000)
        c.database.migrateOnStart = try env.bool("MIGRATE_ON_START", c.database.migrateOnStart)
        c.database.poolSize = try env.int("DB_POOL_SIZE", c.database.poolSize, 1...500)
        c.database.poolTimeout = try env.milliseconds("DB_POOL_TIMEOUT_MS", c.database.poolTimeout, 1...600_000)
        c.database.lockTimeout = try env.milliseconds("DB_LOCK_TIMEOUT_MS", c.database.lockTimeout, 0...600_000)
        c.database.statementTimeout = try env.milliseconds("DB_STATEMENT_TIMEOUT_MS", c.database.statementTimeout, 0...86_400_000)
        c.database.idleInTransactionTimeout = try env.milliseconds(
            "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", c.database.idleInTransactionTimeout, 0...86_400_000)
        c.database.sendLanes = try env.int("SEND_BATCH_LANES", c.database.sendLanes, 1...64)
        c.database.sendBatchMax = try env.int("SEND_BATCH_MAX", c.database.sendBatchMax, 1...1000)

        c.auth.tokenLifetime = try env.seconds("ACCESS_TOKEN_TTL_SECONDS", c.auth.tokenLifetime, 60...31_536_000)
        c.auth.bcryptCost = try env.int("BCRYPT_COST", c.auth.bcryptCost, 4...31)
        c.auth.bcryptThreads = try env.int("BCRYPT_THREADS", c.auth.bcryptThreads, 1...64)
        c.auth.bcryptMaxPending = try env.int("BCRYPT_MAX_PENDING", c.auth.bcryptMaxPending, 1...10_000)
        c.auth.userCacheLifetime = try env.milliseconds("AUTH_CACHE_MS", c.auth.userCacheLifetime, 0...60_000)

        c.uploads.directory = env.value("UPLOAD_DIR") ?? c.uploads.directory
        c.uploads.publicBaseURL = (env.value("PUBLIC_BASE_URL") ?? c.uploads.publicBaseURL)
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        c.uploads.maxBytes = try env.int("MAX_UPLOAD_BYTES", c.uploads.maxBytes, 1...(1 << 40))

        let retentionSeconds = try env.int("RETENTION_INTERVAL_SECONDS", Int(c.retention.interval?.components.seconds ?? 0), 0...604_800)
        c.retention.interval = retentionSeconds == 0 ? nil : .seconds(retentionSeconds)
        c.retention.batchSize = try env.int("RETENTION_BATCH_SIZE", c.retention.batchSize, 1...100_000)
        let changeLogDays = try env.int("CHANGE_LOG_RETENTION_DAYS", Int(c.retention.changeLogWindow.components.seconds / 86_400), 1...3650)
        c.retention.changeLogWindow = .seconds(changeLogDays * 86_400)

        if let instanceID = env.value("INSTANCE_ID") { c.realtime.instanceID = instanceID }
        c.realtime.maxInboundMessageBytes = try env.int("WS_MAX_MESSAGE_BYTES", c.realtime.maxInboundMessageBytes, 1024...(1 << 20))
        c.realtime.outboundQueueFrames = try env.int("WS_OUTBOUND_QUEUE_FRAMES", c.realtime.outboundQueueFrames, 16...1_000_000)
        c.realtime.outboundQueueBytes = try env.int("WS_OUTBOUND_QUEUE_BYTES", c.realtime.outboundQueueBytes, 65536...(1 << 30))
        c.realtime.pingInterval = try env.seconds("WS_PING_SECONDS", c.realtime.pingInterval, 1...3600)
        c.realtime.heartbeat = try env.seconds("PRESENCE_HEARTBEAT_SECONDS", c.realtime.heartbeat, 1...60)
        c.realtime.presenceExpiry = try env.seconds("PRESENCE_EXPIRY_SECONDS", c.realtime.presenceExpiry, 2...600)
        guard c.realtime.presenceExpiry > c.realtime.heartbeat else {
            throw Invalid(description: "PRESENCE_EXPIRY_SECONDS must be longer than PRESENCE_HEARTBEAT_SECONDS")
        }
        c.realtime.pollInterval = try env.seconds("REALTIME_POLL_SECONDS", c.realtime.pollInterval, 1...300)
        c.realtime.catchUpBatch = try env.int("WS_CATCH_UP_BATCH", c.realtime.catchUpBatch, 1...1000)
        c.realtime.maxSocketsPerUser = try env.int("WS_MAX_SOCKETS_PER_USER", c.realtime.maxSocketsPerUser, 1...100_000)
        c.realtime.announceChanges = try env.bool("ANNOUNCE_CHANGES", c.realtime.announceChanges)
        c.realtime.notifyBatchWindow = try env.milliseconds("NOTIFY_BATCH_WINDOW_MS", c.realtime.notifyBatchWindow, 0...1000)

        let limits = c.rateLimits
        c.rateLimits.loginFailuresPerMinute = try env.int("RATE_LIMIT_LOGIN_FAILURES_PER_MINUTE", limits.loginFailuresPerMinute, 0...100_000)
        c.rateLimits.loginFailuresPerAddressPerMinute = try env.int(
            "RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE", limits.loginFailuresPerAddressPerMinute, 0...1_000_000)
        c.rateLimits.registrationsPerAddressPerMinute = try env.int(
            "RATE_LIMIT_REGISTRATIONS_PER_ADDRESS_PER_MINUTE", limits.registrationsPerAddressPerMinute, 0...1_000_000)
        c.rateLimits.sendsPerSecond = try env.int("RATE_LIMIT_SENDS_PER_SECOND", limits.sendsPerSecond, 0...1_000_000)
        c.rateLimits.sendBurst = try env.optionalInt("RATE_LIMIT_SEND_BURST", 0...1_000_000)
        c.rateLimits.typingPerSecond = try env.int("WS_TYPING_PER_SECOND", limits.typingPerSecond, 0...10_000)
        c.rateLimits.framesPerSecond = try env.int("WS_FRAMES_PER_SECOND", limits.framesPerSecond, 0...100_000)
        c.rateLimits.trustForwardedFor = try env.bool("TRUST_FORWARDED_FOR", limits.trustForwardedFor)
        return c
    }
}

/// How log lines are written (`LOG_FORMAT`).
public enum LogFormat: String, Sendable {
    /// swift-log's text lines.
    case text
    /// One JSON object per line.
    case json

    init(parsing text: String?) throws(AppConfiguration.Invalid) {
        guard let text else {
            self = .text
            return
        }
        guard let format = LogFormat(rawValue: text.lowercased()) else {
            throw AppConfiguration.Invalid(description: "LOG_FORMAT must be text or json")
        }
        self = format
    }
}

/// Environment lookups that note which keys were read. Empty and blank values count as unset.
final class EnvironmentReader {
    private let environment: [String: String]
    private(set) var keysRead: [String] = []

    init(_ environment: [String: String]) {
        self.environment = environment
    }

    func value(_ key: String) -> String? {
        if !keysRead.contains(key) { keysRead.append(key) }
        guard let value = environment[key]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else {
            return nil
        }
        return value
    }

    func optionalInt(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let text = value(key) else { return nil }
        guard let number = Int(text), range.contains(number) else {
            throw AppConfiguration.Invalid(description: "\(key) must be an integer in \(range)")
        }
        return number
    }

    func int(_ key: String, _ defaultValue: Int, _ range: ClosedRange<Int>) throws -> Int {
        try optionalInt(key, range) ?? defaultValue
    }

    /// A duration given in whole seconds.
    func seconds(_ key: String, _ defaultValue: Duration, _ range: ClosedRange<Int>) throws -> Duration {
        try optionalInt(key, range).map { .seconds($0) } ?? defaultValue
    }

    /// A duration given in whole milliseconds.
    func milliseconds(_ key: String, _ defaultValue: Duration, _ range: ClosedRange<Int>) throws -> Duration {
        try optionalInt(key, range).map { .milliseconds($0) } ?? defaultValue
    }

    func bool(_ key: String, _ defaultValue: Bool) throws -> Bool {
        guard let text = value(key)?.lowercased() else { return defaultValue }
        switch text {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw AppConfiguration.Invalid(description: "\(key) must be true or false")
        }
    }
}
