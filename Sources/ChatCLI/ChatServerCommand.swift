import ArgumentParser
import ChatCore
import ChatServer
import Foundation
import Logging
import Metrics
import Postgres
import Prometheus
import ServiceLifecycle

@main
struct ChatServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-server",
        abstract: "PostgreSQL-backed chat API server.",
        discussion: """
            Configured by environment variables, and by a .env file in the working directory \
            (ENV_FILE names another) for keys the environment does not set. \
            .env.example and the README describe each one; the server reads:

            \(AppConfiguration.environmentKeys.joined(separator: " "))
            """,
        subcommands: [Serve.self, Migrate.self],
        defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the HTTP server (the default).")

    @Flag(name: .customLong("no-migrate"), help: "Do not apply pending migrations at start (MIGRATE_ON_START=false).")
    var noMigrate = false

    func run() async throws {
        var configuration = try loadConfiguration()
        if noMigrate { configuration.database.migrateOnStart = false }
        bootstrapLogging(configuration.logging.format)
        let logger = makeLogger(configuration.logging.level)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let sockets = OpenSockets(maxPerUser: configuration.realtime.maxSocketsPerUser)
        let app = try await buildApplication(
            configuration: configuration, logger: logger, metrics: registry, sockets: sockets)
        // The drain comes after the application, so SIGTERM reaches it first: WebSockets are
        // closed with 1001 before the HTTP server stops. The whole shutdown is bounded: what
        // is still running after twice the grace period is cancelled.
        let grace = configuration.http.shutdownGrace
        var group = ServiceGroupConfiguration(
            services: [.init(service: app), .init(service: WebSocketDrain(sockets: sockets, grace: grace, logger: logger))],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = grace * 2 + .seconds(5)
        do {
            try await ServiceGroup(configuration: group).run()
        } catch let error as PostgresError {
            throw CommandFailure(error, databaseURL: configuration.database.url.value)
        } catch let error as AppConfiguration.Invalid {
            throw CommandFailure(description: "configuration error: \(error.description)")
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending SQL migrations (those built into this binary, or MIGRATIONS_DIR's) and exit.",
        discussion: "Needs DATABASE_URL only. Several processes may migrate at once: an advisory lock serialises them.")

    @Flag(help: "List applied and pending migrations; apply nothing.")
    var status = false

    func run() async throws {
        let settings: AppConfiguration.MigrationSettings
        do {
            settings = try AppConfiguration.MigrationSettings.fromEnvironment(try environment())
        } catch let error as AppConfiguration.Invalid {
            throw CommandFailure(description: "configuration error: \(error.description)")
        }
        bootstrapLogging(settings.logging.format)
        let logger = makeLogger(settings.logging.level)
        let migrations = try ChatSchema.migrations(overrideDirectory: settings.migrationsDirectory)
        let client = PostgresClient(
            configuration: PostgresConfiguration(
                url: settings.databaseURL, applicationName: "chat-server-migrate", dedicatedURL: settings.listenURL),
            logger: logger)
        let migrator = Migrator(client: client, logger: logger)
        do {
            if status {
                for state in try await migrator.status(of: migrations) {
                    switch state {
                    case .applied(let migration, let at):
                        print("applied  \(migration.name)  \(PostgresTimestamp.format(at))")
                    case .pending(let migration):
                        print("pending  \(migration.name)")
                    case .unknown(let version, let at):
                        print("applied  \(version) (not known to this binary: a newer one applied it)  \(PostgresTimestamp.format(at))")
                    }
                }
            } else {
                let applied = try await migrator.migrate(migrations)
                print(applied.isEmpty ? "Database is up to date." : "Applied migrations: \(applied.joined(separator: ", "))")
            }
        } catch let error as PostgresError {
            await client.shutdown()
            throw CommandFailure(error, databaseURL: settings.databaseURL)
        }
        await client.shutdown()
    }
}

/// A failure reported as one line, without the usage text ArgumentParser prints for
/// validation errors.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String

    init(description: String) {
        self.description = description
    }

    /// Says what failed: for a connection failure, where the server tried to connect
    /// (never the password) and libpq's reason; else the database's full error.
    init(_ error: PostgresError, databaseURL: String) {
        let target = PostgresConfiguration(url: databaseURL).target ?? "DATABASE_URL"
        switch error.kind {
        case .connectionFailed, .connectionClosed:
            description = "cannot connect to PostgreSQL (\(target)): \(error.message.trimmingCharacters(in: .whitespacesAndNewlines))"
        default:
            description = "database error (\(target)): \(error.debugDescription)"
        }
    }
}

/// The process environment, with a `.env` file's values for keys it lacks.
func environment() throws -> [String: String] {
    let environment = ProcessInfo.processInfo.environment
    do {
        return try DotEnv.merged(into: environment, file: environment["ENV_FILE"] ?? ".env")
    } catch let error as DotEnv.Invalid {
        throw CommandFailure(description: "configuration error: \(error.description)")
    }
}

func loadConfiguration() throws -> AppConfiguration {
    do {
        return try AppConfiguration.fromEnvironment(try environment())
    } catch let error as AppConfiguration.Invalid {
        throw CommandFailure(description: "configuration error: \(error.description)")
    }
}

func makeLogger(_ level: Logger.Level) -> Logger {
    var logger = Logger(label: "chat-server")
    logger.logLevel = level
    return logger
}
