import Foundation
import Logging

/// Applies numbered plain-SQL migration files (`0001_init.sql`, `0002_...sql`) in order.
///
/// Each pending file runs in its own transaction and is recorded in `schema_migrations`
/// (version = the file name's leading number). The whole run holds a session advisory
/// lock, so several processes migrating at once apply each file exactly once. Files must
/// not contain their own BEGIN/COMMIT, so that `psql -1 -f FILE` applies them the same way.
public struct Migrator: Sendable {
    public struct Migration: Sendable, Equatable {
        public var version: String
        public var name: String
        public var sql: String

        public init(version: String, name: String, sql: String) {
            self.version = version
            self.name = name
            self.sql = sql
        }
    }

    /// One version's state in a database (`migrate --status`).
    public enum VersionState: Sendable, Equatable {
        case applied(Migration, at: Date)
        case pending(Migration)
        /// Recorded in the database but unknown to this program (a newer one applied it).
        case unknown(version: String, at: Date)
    }

    /// Arbitrary constant identifying the migration lock.
    public static let advisoryLockKey: Int64 = 7_262_531_001

    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Reads `*.sql` files whose names start with digits, ordered by that number.
    public static func loadMigrations(from directory: URL) throws -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw MigrationDirectoryError(path: directory.path, reason: error.localizedDescription)
        }
        return try names.compactMap { name -> (Int, Migration)? in
            guard name.hasSuffix(".sql") else { return nil }
            let digits = name.prefix(while: \.isNumber)
            guard let number = Int(digits) else { return nil }
            let sql = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            return (number, Migration(version: String(digits), name: name, sql: sql))
        }
        .sorted { $0.0 < $1.0 }
        .map(\.1)
    }

    /// Applies every migration not yet recorded; returns the versions applied now.
    @discardableResult
    public func migrate(_ migrations: [Migration]) async throws -> [String] {
        // A dedicated session: the advisory lock is held by the session, not a transaction.
        let connection = try await client.openDedicatedConnection()
        // A migration may rewrite a large table or wait for running transactions: the
        // client's request timeouts do not apply to it.
        try await connection.simpleQuery(
            "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        try await connection.execute("SELECT pg_advisory_lock(\(Self.advisoryLockKey))")
        do {
            let applied = try await run(migrations, on: connection)
            try await connection.execute("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))")
            return applied
        } catch {
            _ = try? await connection.execute("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))")
            throw error
        }
    }

    /// Every known migration, applied or pending, and any recorded version not among them.
    public func status(of migrations: [Migration]) async throws -> [VersionState] {
        let exists = try await client.queryRow("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
        var applied: [String: Date] = [:]
        if try exists.decode(Bool.self, "present") {
            for row in try await client.query("SELECT version, applied_at FROM schema_migrations") {
                applied[try row.decode(String.self, "version")] = try row.decode(Date.self, "applied_at")
            }
        }
        let known = Set(migrations.map(\.version))
        let states = migrations.map { migration in
            applied[migration.version].map { VersionState.applied(migration, at: $0) } ?? .pending(migration)
        }
        let unknown = applied.filter { !known.contains($0.key) }.sorted { $0.key < $1.key }
            .map { VersionState.unknown(version: $0.key, at: $0.value) }
        return states + unknown
    }

    private func run(_ migrations: [Migration], on connection: PostgresConnection) async throws -> [String] {
        try await connection.simpleQuery(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version text PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        let rows = try await connection.query("SELECT version FROM schema_migrations")
        let done = Set(try rows.map { try $0.decode(String.self, column: 0) })
        var applied: [String] = []
        for migration in migrations where !done.contains(migration.version) {
            logger.info("applying migration", metadata: ["db.migration": "\(migration.name)"])
            try await connection.simpleQuery("BEGIN")
            do {
                try await connection.simpleQuery(migration.sql)
                try await connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES (\(migration.version)) ON CONFLICT DO NOTHING")
                try await connection.simpleQuery("COMMIT")
            } catch {
                _ = try? await connection.simpleQuery("ROLLBACK")
                logger.error(
                    "migration failed",
                    metadata: ["db.migration": "\(migration.name)", "error": "\(String(reflecting: error))"])
                throw error
            }
            applied.append(migration.version)
        }
        return applied
    }
}

/// The migrations directory is missing or unreadable.
public struct MigrationDirectoryError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "cannot read the migrations directory \(path): \(reason)" }
}
