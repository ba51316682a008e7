import ChatCore
import Foundation
import Hummingbird
import Logging
import Postgres
import Prometheus
import ServiceLifecycle

/// Builds the server: database pool, stores, routes and middleware. Used by `chat-server
/// serve` and by the tests, so both run the same application.
public func buildApplication(
    configuration: AppConfiguration,
    logger: Logger,
    metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    events: any ChatEventSink = DiscardingEventSink()
) async throws -> some ApplicationProtocol {
    let postgres = PostgresClient(
        configuration: PostgresConfiguration(
            url: configuration.databaseURL, applicationName: "chat-server", poolSize: configuration.databasePoolSize,
            poolWaitTimeout: .milliseconds(Int(configuration.databasePoolTimeoutSeconds * 1000))),
        logger: logger)
    let storage = UploadStorage(directory: configuration.uploadDirectory, maxBytes: configuration.maxUploadBytes)
    try storage.prepare()
    let router = try await buildRouter(
        configuration: configuration, postgres: postgres, storage: storage, logger: logger, metrics: metrics,
        events: events)
    var services: [any Service] = [postgres]
    if configuration.retentionIntervalSeconds > 0 {
        services.append(
            RetentionService(
                store: RetentionStore(db: postgres), files: FileStore(db: postgres),
                storage: storage,
                interval: .seconds(configuration.retentionIntervalSeconds), batchSize: configuration.retentionBatchSize,
                logger: logger))
    }
    var app = Application(
        router: router,
        configuration: .init(
            address: .hostname(configuration.host, port: configuration.port), serverName: "chat-server"),
        services: services,
        logger: logger)
    if configuration.migrateOnStart {
        app.beforeServerStarts {
            let migrations = try Migrator.loadMigrations(
                from: URL(fileURLWithPath: configuration.migrationsDirectory, isDirectory: true))
            try await Migrator(client: postgres, logger: logger).migrate(migrations)
        }
    }
    return app
}

func buildRouter(
    configuration: AppConfiguration, postgres: PostgresClient, storage: UploadStorage, logger: Logger,
    metrics: PrometheusCollectorRegistry, events: any ChatEventSink
) async throws -> Router<ChatRequestContext> {
    let users = UserStore(db: postgres, logger: logger)
    let tokens = await TokenService(
        secret: configuration.jwtSecret, lifetime: .seconds(configuration.accessTokenTTLSeconds))
    let hasher = PasswordHasher(cost: configuration.bcryptCost)
    let files = FileURLs(publicBaseURL: configuration.publicBaseURL)
    let auth = AuthMiddleware(tokens: tokens, users: users)

    let router = Router(context: ChatRequestContext.self)
    router.add(middleware: ErrorMiddleware())
    router.add(middleware: MetricsMiddleware())
    let registry = RouteRegistry()

    OperationsController(postgres: postgres, metrics: metrics)
        .addRoutes(to: Routes(group: router.group(), prefix: "", registry: registry))

    AuthController(
        users: users, tokens: tokens, hasher: hasher, decoyHash: try await hasher.makeDecoyHash(),
        tokenLifetimeSeconds: configuration.accessTokenTTLSeconds
    ).addRoutes(
        public: Routes(group: router.group("auth"), prefix: "auth", registry: registry),
        authenticated: Routes(group: router.group("auth").add(middleware: auth), prefix: "auth", registry: registry))

    let chat = Routes(group: router.group("chat").add(middleware: auth), prefix: "chat", registry: registry)
    let rooms = RoomStore(db: postgres, events: events)
    RoomController(rooms: rooms).addRoutes(to: chat)
    MessageController(messages: MessageStore(db: postgres, events: events), rooms: rooms, files: files, storage: storage)
        .addRoutes(to: chat)
    SettingsController(settings: SettingsStore(db: postgres), rooms: rooms).addRoutes(to: chat)
    SearchController(search: SearchStore(db: postgres)).addRoutes(to: chat)

    UploadsController(storage: storage, files: FileStore(db: postgres))
        .addRoutes(to: Routes(group: router.group("uploads"), prefix: "uploads", registry: registry))

    registry.addMethodNotAllowedRoutes(to: router)
    return router
}
