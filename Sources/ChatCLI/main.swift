import ArgumentParser
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
        subcommands: [Serve.self, Migrate.self],
        defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the HTTP server (the default).")

    @Flag(name: .customLong("no-migrate"), help: "Do not apply pending migrations at start (MIGRATE_ON_START=false).")
    var noMigrate = false

    func run() async throws {
        var configuration = try loadConfiguration()
        if noMigrate { configuration.migrateOnStart = false }
        let logger = makeLogger(configuration.logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let sockets = OpenSockets(maxPerUser: configuration.realtime.maxSocketsPerUser)
        let app = try await buildApplication(
            configuration: configuration, logger: logger, metrics: registry, sockets: sockets)
        // The drain comes after the application, so SIGTERM reaches it first: WebSockets are
        // closed with 1001 before the HTTP server stops. The whole shutdown is bounded: what
        // is still running after twice the grace period is cancelled.
        let grace = Duration.seconds(configuration.shutdownGraceSeconds)
        var group = ServiceGroupConfiguration(
            services: [.init(service: app), .init(service: WebSocketDrain(sockets: sockets, grace: grace, logger: logger))],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = grace * 2 + .seconds(5)
        try await ServiceGroup(configuration: group).run()
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending SQL migrations from MIGRATIONS_DIR (default ./sql) and exit.")

    func run() async throws {
        let configuration = try loadConfiguration(requireSecret: false)
        let logger = makeLogger(configuration.logLevel)
        let client = PostgresClient(
            configuration: PostgresConfiguration(url: configuration.databaseURL, applicationName: "chat-server-migrate"),
            logger: logger)
        let migrations = try Migrator.loadMigrations(
            from: URL(fileURLWithPath: configuration.migrationsDirectory, isDirectory: true))
        do {
            let applied = try await Migrator(client: client, logger: logger).migrate(migrations)
            print(applied.isEmpty ? "Database is up to date." : "Applied migrations: \(applied.joined(separator: ", "))")
        } catch let error as PostgresError {
            await client.shutdown()
            throw ValidationError("migration failed: \(error.debugDescription)")
        }
        await client.shutdown()
    }
}

func loadConfiguration(requireSecret: Bool = true) throws -> AppConfiguration {
    var environment = ProcessInfo.processInfo.environment
    if !requireSecret, environment["JWT_SECRET"] == nil {
        environment["JWT_SECRET"] = "placeholder: this command signs and verifies no token"
    }
    do {
        return try AppConfiguration.fromEnvironment(environment)
    } catch let error as AppConfiguration.Invalid {
        throw ValidationError("configuration error: \(error.description)")
    }
}

func makeLogger(_ level: Logger.Level) -> Logger {
    var logger = Logger(label: "chat-server")
    logger.logLevel = level
    return logger
}
