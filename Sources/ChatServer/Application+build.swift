import ChatCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import Postgres
import Prometheus
import ServiceLifecycle

/// Builds the server: database pool, stores, routes and middleware. Used by `chat-server
/// serve` and by the tests, so both run the same application.
public func buildApplication(
    configuration: AppConfiguration,
    logger: Logger,
    metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    events: any ChatEventSink = DiscardingEventSink(),
    sockets: OpenSockets? = nil,
    routes registry: RouteRegistry = RouteRegistry()
) async throws -> some ApplicationProtocol {
    let sockets = sockets ?? OpenSockets(maxPerUser: configuration.realtime.maxSocketsPerUser)
    let serverMetrics = ServerMetrics(registry: metrics)
    let realtime = configuration.realtime
    let database = configuration.database
    let primaryConfiguration = PostgresConfiguration(
        // pg_stat_activity tells the instances apart (names are cut at 63 bytes).
        url: database.url.value, applicationName: "chat-server \(realtime.instanceID)",
        poolSize: database.poolSize, poolWaitTimeout: database.poolTimeout,
        sessionSettings: database.serverSessionSettings, poolMode: database.poolMode,
        dedicatedURL: database.listenURL?.value)
    let postgres = PostgresClient(configuration: primaryConfiguration, logger: logger)
    let replicas = database.replicaURLs.isEmpty
        ? nil
        : PostgresReplicas(
            primary: postgres,
            replicas: database.replicaURLs.map { url in
                var replica = primaryConfiguration
                replica.url = url.value
                replica.poolMode = .session
                replica.dedicatedURL = nil
                // A replica that cannot serve soon sends the read to the primary instead.
                replica.poolWaitTimeout = min(database.poolTimeout, .milliseconds(250))
                return PostgresClient(configuration: replica, logger: logger)
            },
            settings: .init(maxLag: database.replicaMaxLag, checkInterval: database.replicaCheckInterval),
            logger: logger)
    let db = ChatDatabase(primary: postgres, replicas: replicas)
    // Delivery's reads (a room's changes after a cursor, on every wake-up and catch-up) run
    // on a pool of their own whose sessions use generic plans: PostgreSQL kept re-planning
    // that statement (0.43 ms to plan, 0.07 ms to run), and its generic plan uses the same
    // indexes. Behind a transaction pooler the setting is not sent (README, "PgBouncer").
    var deliveryConfiguration = primaryConfiguration
    deliveryConfiguration.poolSize = max(2, database.poolSize / 2)
    deliveryConfiguration.sessionSettings["plan_cache_mode"] = "force_generic_plan"
    let delivery = PostgresClient(configuration: deliveryConfiguration, logger: logger)
    let writer = MessageWriter(
        db: postgres,
        settings: .init(
            lanes: configuration.database.sendLanes, maxBatch: configuration.database.sendBatchMax,
            announces: realtime.announceChanges),
        logger: logger)
    let notifier = ChangeNotifier(
        postgres: postgres, batchWindow: realtime.notifyBatchWindow, metrics: serverMetrics,
        logger: logger)
    let listener = PostgresListener(client: delivery, channels: [ChangeNotice.channel], logger: logger)
    let hub = RealtimeHub(
        postgres: delivery, listenerEvents: listener.events, sockets: sockets, files: FileURLs(publicBaseURL: configuration.uploads.publicBaseURL),
        settings: .init(pollInterval: realtime.pollInterval, catchUpBatch: realtime.catchUpBatch), metrics: serverMetrics,
        logger: logger)
    let presenceStore = PresenceStore(
        db: db, instanceID: realtime.instanceID, expiry: realtime.presenceExpiry)
    let presence = PresenceTracker(
        store: presenceStore, notifier: notifier, heartbeat: realtime.heartbeat, logger: logger)
    let events = realtime.announceChanges ? EventSinks([notifier, events]) : EventSinks([events])
    let storage = UploadStorage(directory: configuration.uploads.directory, maxBytes: configuration.uploads.maxBytes)
    try storage.prepare()
    let auth = AuthMiddleware(
        tokens: await TokenService(
            secret: configuration.auth.jwtSecret.value, lifetime: configuration.auth.tokenLifetime),
        users: UserStore(db: postgres, logger: logger),
        cache: AuthenticatedUserCache(lifetime: configuration.auth.userCacheLifetime))
    let hasher = PasswordHasher(
        cost: configuration.auth.bcryptCost, threads: configuration.auth.bcryptThreads,
        maxPending: configuration.auth.bcryptMaxPending)
    let limits = RateLimits(configuration.rateLimits)
    let accessLog =
        configuration.http.accessLog && logger.logLevel <= .info ? AccessLog(format: configuration.logging.format) : nil
    let router = try await buildRouter(
        configuration: configuration, db: db, storage: storage, auth: auth, hasher: hasher, logger: logger,
        metrics: serverMetrics, events: events, presence: presenceStore, writer: writer, limits: limits,
        accessLog: accessLog, registry: registry)
    let connectionTasks = ConnectionTasks()
    let webSocketRouter = Router(context: ChatWebSocketContext.self)
    let webSockets = WebSocketController(
        auth: auth, messages: MessageStore(db: db, events: events, writer: writer), rooms: RoomStore(db: db, events: events),
        realtime: RealtimeStore(db: delivery), hub: hub,
        presence: presence, notifier: notifier, files: FileURLs(publicBaseURL: configuration.uploads.publicBaseURL),
        settings: realtime, sockets: sockets, rateLimits: configuration.rateLimits, sends: limits.sendsByUser,
        cors: configuration.http.cors, metrics: serverMetrics, tasks: connectionTasks)
    webSockets.addRoutes(to: webSocketRouter, registry: registry)
    // Shutdown runs in reverse. WebSocketDrain (beside the application) has closed the sockets;
    // the HTTP server stops first, then the sockets' last work ends (their subscriptions and
    // presence are left, a message being sent is stored), presence leaves, the hub stops,
    // then its listener, the writer stores what is queued, the notifier flushes, and the
    // pool closes last.
    var services: [any Service] = [
        postgres, delivery, notifier, writer, listener, hub, presence, hasher,
        WebSocketKeepAlive(sockets: sockets, interval: realtime.pingInterval), connectionTasks,
    ]
    if let replicas { services.insert(replicas, at: 1) }
    if let accessLog { services.insert(accessLog, at: 0) }  // stops last: the final requests' lines are written
    if let interval = configuration.retention.interval {
        services.append(
            RetentionService(
                store: RetentionStore(db: postgres), files: FileStore(db: postgres),
                storage: storage,
                interval: interval, batchSize: configuration.retention.batchSize,
                changeLogWindow: configuration.retention.changeLogWindow, metrics: serverMetrics, logger: logger))
    }
    let clientTimeout = TimeAmount.milliseconds(configuration.http.idleTimeout.milliseconds)
    var app = Application(
        router: router,
        // HTTP_IDLE_TIMEOUT_SECONDS bounds every wait on a client: a keep-alive connection
        // idle between requests, a request body that stops arriving, and (FirstRequestGuard)
        // a first request head that does not arrive.
        server: .chatServer(
            http1: .init(additionalChannelHandlers: [BodyReadTimeout(timeout: clientTimeout)], idleTimeout: clientTimeout),
            firstRequestTimeout: clientTimeout, webSocketRouter: webSocketRouter, webSockets: webSockets),
        configuration: .init(
            address: .hostname(configuration.http.host, port: configuration.http.port), serverName: "chat-server"),
        services: services,
        logger: logger)
    if database.poolMode == .transaction {
        app.beforeServerStarts {
            // Behind a transaction pooler the proxy, not this process, sets the sessions'
            // limits and flags; the send path depends on them (chat.announces_own_changes,
            // sql/0006), so refuse to start without them (README, "PgBouncer").
            let missing = try await postgres.sessionSettingsMissing()
            if !missing.isEmpty {
                let line = primaryConfiguration.effectiveSessionSettings.sorted { $0.key < $1.key }
                    .map { "SET \($0.key) = \($0.value)" }.joined(separator: "; ")
                throw AppConfiguration.Invalid(
                    description: "DATABASE_POOL_MODE=transaction: the pooled sessions lack \(missing.joined(separator: ", ")); set them in the pooler (PgBouncer: connect_query='\(line)')")
            }
        }
    }
    if configuration.database.migrateOnStart {
        app.beforeServerStarts {
            let migrations = try ChatSchema.migrations(overrideDirectory: configuration.database.migrationsDirectory)
            try await Migrator(client: postgres, logger: logger).migrate(migrations)
        }
    }
    return app
}

func buildRouter(
    configuration: AppConfiguration, db: ChatDatabase, storage: UploadStorage, auth: AuthMiddleware,
    hasher: PasswordHasher, logger: Logger, metrics: ServerMetrics, events: any ChatEventSink, presence: PresenceStore,
    writer: MessageWriter, limits: RateLimits, accessLog: AccessLog?, registry: RouteRegistry
) async throws -> Router<ChatRequestContext> {
    let postgres = db.primary
    let users = auth.users
    let tokens = auth.tokens
    let files = FileURLs(publicBaseURL: configuration.uploads.publicBaseURL)

    let router = Router(context: ChatRequestContext.self)
    // Metrics outside the error middleware, so every request is counted and timed with the
    // status it was answered with (errors included), not as a thrown error.
    router.add(middleware: RequestObservationMiddleware(metrics: metrics, accessLog: accessLog))
    router.add(middleware: CORSMiddleware(policy: configuration.http.cors))
    router.add(middleware: ErrorMiddleware())

    OperationsController(postgres: postgres, replicas: db.replicas, metrics: metrics, metricsToken: configuration.http.metricsToken?.value)
        .addRoutes(to: Routes(group: router.group(), prefix: "", registry: registry))

    AuthController(
        users: users, tokens: tokens, hasher: hasher, decoyHash: try await hasher.makeDecoyHash(),
        tokenLifetime: configuration.auth.tokenLifetime, limits: limits,
        trustForwardedFor: configuration.rateLimits.trustForwardedFor
    ).addRoutes(
        public: Routes(group: router.group("auth"), prefix: "auth", registry: registry),
        authenticated: Routes(group: router.group("auth").add(middleware: auth), prefix: "auth", registry: registry))

    let chat = Routes(group: router.group("chat").add(middleware: auth), prefix: "chat", registry: registry)
    let rooms = RoomStore(db: db, events: events)
    RoomController(rooms: rooms).addRoutes(to: chat)
    MessageController(
        messages: MessageStore(db: db, events: events, writer: writer), rooms: rooms, files: files, storage: storage,
        sends: limits.sendsByUser)
        .addRoutes(to: chat)
    SettingsController(settings: SettingsStore(db: db), rooms: rooms).addRoutes(to: chat)
    SearchController(search: SearchStore(db: db)).addRoutes(to: chat)
    PresenceController(presence: presence).addRoutes(to: chat)

    UploadsController(storage: storage, files: FileStore(db: postgres))
        .addRoutes(to: Routes(group: router.group("uploads"), prefix: "uploads", registry: registry))

    registry.addMethodNotAllowedRoutes(to: router)
    return router
}

/// Delivers each event to several sinks in turn.
struct EventSinks: ChatEventSink {
    let sinks: [any ChatEventSink]

    init(_ sinks: [any ChatEventSink]) {
        self.sinks = sinks
    }

    func publish(_ event: ChatEvent) async {
        for sink in sinks { await sink.publish(event) }
    }
}
