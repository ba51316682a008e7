import Foundation
import Logging
import Postgres

/// Every setting of the server, read from the environment in one place. `.env.example`
/// lists each key with its default.
public struct AppConfiguration: Sendable {
    public var databaseURL: String
    public var host: String
    public var port: Int
    /// HS256 secret for access tokens. Required unless `developmentMode`.
    public var jwtSecret: String
    public var accessTokenTTLSeconds: Int
    public var uploadDirectory: String
    /// Prefix of `file_url` (e.g. `https://chat.example.com`); empty for relative URLs.
    public var publicBaseURL: String
    public var maxUploadBytes: Int
    public var databasePoolSize: Int
    /// Seconds a request waits for a free database connection before failing with 503.
    public var databasePoolTimeoutSeconds: Double
    public var bcryptCost: Int
    /// Threads that hash passwords (`BCRYPT_THREADS`), and how many hashes may wait or run at
    /// once before a sign-in is refused with 503 (`BCRYPT_MAX_PENDING`).
    public var bcryptThreads = 2
    public var bcryptMaxPending = 16
    public var logLevel: Logger.Level
    /// `LOG_FORMAT`: `text` (default) or `json`, one object per line for log shippers.
    public var logFormat = LogFormat.text
    /// One info line per answered request (`ACCESS_LOG`, default true).
    public var accessLog = true
    /// `CHAT_ENV=development`: allows a built-in JWT secret. Never in production.
    public var developmentMode: Bool
    /// Apply pending migrations when `serve` starts (`MIGRATE_ON_START`, default true).
    public var migrateOnStart: Bool
    /// A directory of numbered `.sql` files to migrate with instead of the migrations this
    /// binary carries (`MIGRATIONS_DIR`); nil: the embedded ones.
    public var migrationsDirectory: String?
    /// Seconds between retention runs (`RETENTION_INTERVAL_SECONDS`); 0 turns the job off.
    public var retentionIntervalSeconds: Int
    /// Messages deleted per retention transaction.
    public var retentionBatchSize: Int
    /// Days a room's change log keeps edits, deletes, read marks and membership changes for
    /// `last_seq` catch-up (`CHANGE_LOG_RETENTION_DAYS`); older cursors get `resync_required`.
    public var changeLogRetentionDays = 7
    public var realtime = RealtimeSettings()
    /// On SIGTERM: how long WebSocket clients get to take their 1001 close before their
    /// connections are cut, and then in-flight requests to finish (`SHUTDOWN_GRACE_SECONDS`).
    public var shutdownGraceSeconds = 10
    /// An HTTP connection idle this long (no request arriving) is closed (`HTTP_IDLE_TIMEOUT_SECONDS`).
    public var httpIdleTimeoutSeconds = 30
    public var database = DatabaseSettings()
    public var rateLimits = RateLimitSettings()
    /// Bearer token `/metrics` requires (`METRICS_TOKEN`); unset, only clients on this host may read it.
    public var metricsToken: String?
    /// Web origins allowed to call the API and open WebSockets from a browser
    /// (`CORS_ALLOWED_ORIGINS`: comma-separated, or `*`); off by default.
    public var cors = CORSPolicy.off

    /// Limits on the server's database sessions and the send path's batching.
    public struct DatabaseSettings: Sendable {
        /// Longest wait for a row lock (a room's, say) before the statement fails and the
        /// request answers 503 (`DB_LOCK_TIMEOUT_MS`, PostgreSQL's `lock_timeout`).
        public var lockTimeoutMilliseconds = 2000
        /// Longest any statement runs (`DB_STATEMENT_TIMEOUT_MS`, `statement_timeout`).
        public var statementTimeoutMilliseconds = 30_000
        /// A session that stays idle inside a transaction this long (a frozen or dead
        /// instance) is ended by PostgreSQL, releasing its locks
        /// (`DB_IDLE_IN_TRANSACTION_TIMEOUT_MS`, `idle_in_transaction_session_timeout`).
        public var idleInTransactionTimeoutMilliseconds = 5000
        /// Send batches written at once, each on one pooled connection (`SEND_BATCH_LANES`).
        public var sendLanes = 2
        /// Most messages stored by one batch statement (`SEND_BATCH_MAX`).
        public var sendBatchMax = 128
        /// How long a token's user (name, active flag) is reused without a query
        /// (`AUTH_CACHE_MS`); an operator's deactivation takes effect within it. 0: no cache.
        public var authCacheMilliseconds = 1000

        public init() {}

        /// The settings every server session starts with.
        var sessionSettings: [String: String] {
            [
                "lock_timeout": "\(lockTimeoutMilliseconds)ms",
                "statement_timeout": "\(statementTimeoutMilliseconds)ms",
                "idle_in_transaction_session_timeout": "\(idleInTransactionTimeoutMilliseconds)ms",
            ]
        }
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
        /// default), in bursts of up to `RATE_LIMIT_SEND_BURST`.
        public var sendsPerSecond = 0
        public var sendBurst = 0
        /// WebSocket `typing` frames per socket per second (`WS_TYPING_PER_SECOND`, bursts of 5):
        /// more are dropped.
        public var typingPerSecond = 2
        /// Other client frames (read, ping, bad frames) per socket per second (`WS_FRAMES_PER_SECOND`,
        /// bursts of twice that): more get one `error` frame and are not handled.
        public var framesPerSecond = 20
        /// Take the client address from the last `X-Forwarded-For` entry (`TRUST_FORWARDED_FOR`):
        /// only behind a proxy that sets it.
        public var trustForwardedFor = false

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
        /// Seconds between server pings; a socket that misses a pong for as long is dropped (`WS_PING_SECONDS`).
        public var pingIntervalSeconds = 30
        /// Presence heartbeat period and expiry (`PRESENCE_HEARTBEAT_SECONDS`, `PRESENCE_EXPIRY_SECONDS`).
        public var heartbeatSeconds = 5
        public var presenceExpirySeconds = 20
        /// Seconds between checks for messages whose wake-up was lost (`REALTIME_POLL_SECONDS`).
        public var pollSeconds = 2
        /// Messages read per query when catching a socket up (`WS_CATCH_UP_BATCH`).
        public var catchUpBatch = 200
        /// Most WebSockets one user may hold open on one instance; more are closed with 4429
        /// (`WS_MAX_SOCKETS_PER_USER`).
        public var maxSocketsPerUser = 100
        /// Milliseconds a change waits for others to share its NOTIFY (`NOTIFY_BATCH_WINDOW_MS`).
        public var notifyBatchWindowMilliseconds = 0
        /// `ANNOUNCE_CHANGES=false` stops this instance from sending NOTIFY: its writes then
        /// reach sockets (its own and other instances') only through the room-head poll.
        /// For measuring what the notifications cost; never in production.
        public var announceChanges = true

        public init() {}
    }

    public static let developmentJWTSecret = "development-only-secret-do-not-use-in-production"

    public init(
        databaseURL: String, host: String = "0.0.0.0", port: Int = 8000, jwtSecret: String,
        accessTokenTTLSeconds: Int = 86_400, uploadDirectory: String = "./uploads", publicBaseURL: String = "",
        maxUploadBytes: Int = 20 * 1024 * 1024, databasePoolSize: Int = 10, databasePoolTimeoutSeconds: Double = 5,
        bcryptCost: Int = 12, logLevel: Logger.Level = .info, developmentMode: Bool = false,
        migrateOnStart: Bool = true, migrationsDirectory: String? = nil, retentionIntervalSeconds: Int = 3600,
        retentionBatchSize: Int = 500
    ) {
        self.databaseURL = databaseURL
        self.host = host
        self.port = port
        self.jwtSecret = jwtSecret
        self.accessTokenTTLSeconds = accessTokenTTLSeconds
        self.uploadDirectory = uploadDirectory
        self.publicBaseURL = publicBaseURL
        self.maxUploadBytes = maxUploadBytes
        self.databasePoolSize = databasePoolSize
        self.databasePoolTimeoutSeconds = databasePoolTimeoutSeconds
        self.bcryptCost = bcryptCost
        self.logLevel = logLevel
        self.developmentMode = developmentMode
        self.migrateOnStart = migrateOnStart
        self.migrationsDirectory = migrationsDirectory
        self.retentionIntervalSeconds = retentionIntervalSeconds
        self.retentionBatchSize = retentionBatchSize
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// What `chat-server migrate` needs: no secret, no server settings.
    public struct MigrationSettings: Sendable {
        public var databaseURL: String
        public var logLevel: Logger.Level
        public var migrationsDirectory: String?
        public var logFormat: LogFormat

        public static func fromEnvironment(_ environment: [String: String]) throws -> MigrationSettings {
            try read(EnvironmentReader(environment))
        }

        static func read(_ env: EnvironmentReader) throws -> MigrationSettings {
            guard let databaseURL = env.value("DATABASE_URL") else {
                throw Invalid(description: "DATABASE_URL is required (a libpq URI such as postgresql://user@host/db)")
            }
            if let scheme = databaseURL.range(of: "://").map({ databaseURL[..<$0.lowerBound].lowercased() }),
                !["postgresql", "postgres"].contains(scheme)
            {
                throw Invalid(
                    description: "DATABASE_URL must be a PostgreSQL URI (postgresql://user:password@host:port/database), not \(scheme)://")
            }
            guard PostgresConfiguration(url: databaseURL).target != nil else {
                throw Invalid(
                    description: "DATABASE_URL is not a libpq connection string (postgresql://user:password@host:port/database or key=value pairs)")
            }
            guard let level = Logger.Level(rawValue: env.value("LOG_LEVEL")?.lowercased() ?? "info") else {
                throw Invalid(description: "LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
            }
            return MigrationSettings(
                databaseURL: databaseURL, logLevel: level, migrationsDirectory: env.value("MIGRATIONS_DIR"),
                logFormat: try LogFormat(parsing: env.value("LOG_FORMAT")))
        }
    }

    /// Every environment variable the server reads (for `--help`, and the test that
    /// `.env.example` lists exactly these).
    public static let environmentKeys: [String] = {
        let reader = EnvironmentReader(["DATABASE_URL": "postgresql:///x", "JWT_SECRET": String(repeating: "k", count: 32)])
        _ = try? read(reader)
        return reader.keysRead
    }()

    /// Reads the configuration from environment variables.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> AppConfiguration
    {
        try read(EnvironmentReader(environment))
    }

    static func read(_ env: EnvironmentReader) throws -> AppConfiguration {
        func value(_ key: String) -> String? { env.value(key) }
        func int(_ key: String, _ defaultValue: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let text = value(key) else { return defaultValue }
            guard let number = Int(text), range.contains(number) else {
                throw Invalid(description: "\(key) must be an integer in \(range)")
            }
            return number
        }
        func bool(_ key: String, _ defaultValue: Bool) throws -> Bool {
            guard let text = value(key)?.lowercased() else { return defaultValue }
            switch text {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw Invalid(description: "\(key) must be true or false")
            }
        }
        let development = ["development", "dev"].contains(value("CHAT_ENV")?.lowercased() ?? "")
        let migration = try MigrationSettings.read(env)
        let secret: String
        if let configured = value("JWT_SECRET") {
            guard configured.utf8.count >= 32 else {
                throw Invalid(description: "JWT_SECRET must be at least 32 bytes (HS256 keys shorter than the hash are weak)")
            }
            secret = configured
        } else if development {
            secret = developmentJWTSecret
        } else {
            throw Invalid(description: "JWT_SECRET is required (set CHAT_ENV=development to use a built-in one)")
        }
        var realtime = RealtimeSettings()
        if let instanceID = value("INSTANCE_ID") { realtime.instanceID = instanceID }
        realtime.maxInboundMessageBytes = try int("WS_MAX_MESSAGE_BYTES", realtime.maxInboundMessageBytes, 1024...(1 << 20))
        realtime.outboundQueueFrames = try int("WS_OUTBOUND_QUEUE_FRAMES", realtime.outboundQueueFrames, 16...1_000_000)
        realtime.outboundQueueBytes = try int("WS_OUTBOUND_QUEUE_BYTES", realtime.outboundQueueBytes, 65536...(1 << 30))
        realtime.pingIntervalSeconds = try int("WS_PING_SECONDS", realtime.pingIntervalSeconds, 1...3600)
        realtime.heartbeatSeconds = try int("PRESENCE_HEARTBEAT_SECONDS", realtime.heartbeatSeconds, 1...60)
        realtime.presenceExpirySeconds = try int("PRESENCE_EXPIRY_SECONDS", realtime.presenceExpirySeconds, 2...600)
        guard realtime.presenceExpirySeconds > realtime.heartbeatSeconds else {
            throw Invalid(description: "PRESENCE_EXPIRY_SECONDS must be longer than PRESENCE_HEARTBEAT_SECONDS")
        }
        realtime.pollSeconds = try int("REALTIME_POLL_SECONDS", realtime.pollSeconds, 1...300)
        realtime.catchUpBatch = try int("WS_CATCH_UP_BATCH", realtime.catchUpBatch, 1...1000)
        realtime.maxSocketsPerUser = try int("WS_MAX_SOCKETS_PER_USER", realtime.maxSocketsPerUser, 1...100_000)
        realtime.announceChanges = try bool("ANNOUNCE_CHANGES", true)
        realtime.notifyBatchWindowMilliseconds = try int("NOTIFY_BATCH_WINDOW_MS", 0, 0...1000)
        var database = DatabaseSettings()
        database.lockTimeoutMilliseconds = try int("DB_LOCK_TIMEOUT_MS", database.lockTimeoutMilliseconds, 0...600_000)
        database.statementTimeoutMilliseconds = try int(
            "DB_STATEMENT_TIMEOUT_MS", database.statementTimeoutMilliseconds, 0...86_400_000)
        database.idleInTransactionTimeoutMilliseconds = try int(
            "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", database.idleInTransactionTimeoutMilliseconds, 0...86_400_000)
        database.sendLanes = try int("SEND_BATCH_LANES", database.sendLanes, 1...64)
        database.sendBatchMax = try int("SEND_BATCH_MAX", database.sendBatchMax, 1...1000)
        database.authCacheMilliseconds = try int("AUTH_CACHE_MS", database.authCacheMilliseconds, 0...60_000)
        var configuration = AppConfiguration(
            databaseURL: migration.databaseURL,
            host: value("HOST") ?? "0.0.0.0",
            port: try int("PORT", 8000, 0...65535),
            jwtSecret: secret,
            accessTokenTTLSeconds: try int("ACCESS_TOKEN_TTL_SECONDS", 86_400, 60...31_536_000),
            uploadDirectory: value("UPLOAD_DIR") ?? "./uploads",
            publicBaseURL: (value("PUBLIC_BASE_URL") ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "/")),
            maxUploadBytes: try int("MAX_UPLOAD_BYTES", 20 * 1024 * 1024, 1...(1 << 40)),
            databasePoolSize: try int("DB_POOL_SIZE", 10, 1...500),
            databasePoolTimeoutSeconds: Double(try int("DB_POOL_TIMEOUT_MS", 5000, 1...600_000)) / 1000,
            bcryptCost: try int("BCRYPT_COST", 12, 4...31),
            logLevel: migration.logLevel,
            developmentMode: development,
            migrateOnStart: try bool("MIGRATE_ON_START", true),
            migrationsDirectory: migration.migrationsDirectory,
            retentionIntervalSeconds: try int("RETENTION_INTERVAL_SECONDS", 3600, 0...604_800),
            retentionBatchSize: try int("RETENTION_BATCH_SIZE", 500, 1...100_000))
        configuration.realtime = realtime
        configuration.database = database
        var limits = RateLimitSettings()
        limits.loginFailuresPerMinute = try int("RATE_LIMIT_LOGIN_FAILURES_PER_MINUTE", limits.loginFailuresPerMinute, 0...100_000)
        limits.loginFailuresPerAddressPerMinute = try int(
            "RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE", limits.loginFailuresPerAddressPerMinute, 0...1_000_000)
        limits.registrationsPerAddressPerMinute = try int(
            "RATE_LIMIT_REGISTRATIONS_PER_ADDRESS_PER_MINUTE", limits.registrationsPerAddressPerMinute, 0...1_000_000)
        limits.sendsPerSecond = try int("RATE_LIMIT_SENDS_PER_SECOND", limits.sendsPerSecond, 0...1_000_000)
        limits.sendBurst = try int("RATE_LIMIT_SEND_BURST", 2 * limits.sendsPerSecond, 0...1_000_000)
        limits.typingPerSecond = try int("WS_TYPING_PER_SECOND", limits.typingPerSecond, 0...10_000)
        limits.framesPerSecond = try int("WS_FRAMES_PER_SECOND", limits.framesPerSecond, 0...100_000)
        limits.trustForwardedFor = try bool("TRUST_FORWARDED_FOR", limits.trustForwardedFor)
        configuration.rateLimits = limits
        configuration.logFormat = migration.logFormat
        configuration.accessLog = try bool("ACCESS_LOG", true)
        configuration.cors = try CORSPolicy(parsing: value("CORS_ALLOWED_ORIGINS"))
        configuration.metricsToken = value("METRICS_TOKEN").flatMap { $0.isEmpty ? nil : $0 }
        configuration.shutdownGraceSeconds = try int("SHUTDOWN_GRACE_SECONDS", 10, 0...600)
        configuration.changeLogRetentionDays = try int("CHANGE_LOG_RETENTION_DAYS", 7, 1...3650)
        configuration.httpIdleTimeoutSeconds = try int("HTTP_IDLE_TIMEOUT_SECONDS", 30, 1...3600)
        configuration.bcryptThreads = try int("BCRYPT_THREADS", 2, 1...64)
        configuration.bcryptMaxPending = try int("BCRYPT_MAX_PENDING", 16, 1...10_000)
        return configuration
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
}
