import ChatCore
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// The request context of WebSocket upgrade requests (`ChatServerChannel` runs the
/// WebSocket routes with it before answering the upgrade): the channel, and the admission
/// the route decided.
struct ChatWebSocketContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    let admission = AdmissionSlot()

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

/// Who may stay on a socket, decided before the 101 response and read by its handler.
enum Admission: Sendable {
    /// `catchUp`: where a room socket starts (nil for the user stream).
    case admitted(User, SocketSession.Kind, catchUp: RealtimeHub.CatchUp?, tokenExpiresAt: Date)
    case rejected(code: Int, reason: String)
}

final class AdmissionSlot: Sendable {
    private let value = NIOLockedValueBox<Admission?>(nil)

    /// Upgrade contexts alive (`chat_ws_upgrade_contexts`): back to zero once upgrades have
    /// been answered, unless a context leaks (hummingbird-websocket 2.8.1 leaked every one).
    static let alive = NIOLockedValueBox(0)

    init() {
        Self.alive.withLockedValue { $0 += 1 }
    }

    deinit {
        Self.alive.withLockedValue { $0 -= 1 }
    }

    func set(_ admission: Admission) { value.withLockedValue { $0 = admission } }
    var admission: Admission? { value.withLockedValue { $0 } }
}

/// `ws /chat/ws/{room_id}` (a room) and `ws /chat/ws` (the user's room list).
///
/// The upgrade is always accepted; a socket that may not stay is then closed with 4401
/// (token), 4400 (query), 4404 (room) or 4403 (not a participant) and a reason.
final class WebSocketController: Sendable {
    let auth: AuthMiddleware
    let messages: MessageStore
    let rooms: RoomStore
    let realtime: RealtimeStore
    let hub: RealtimeHub
    let presence: PresenceTracker
    let notifier: ChangeNotifier
    let files: FileURLs
    let settings: AppConfiguration.RealtimeSettings
    let sockets: OpenSockets
    let rateLimits: AppConfiguration.RateLimitSettings
    /// Messages per user (REST and WebSocket share it).
    let sends: RateLimiter<Int64>
    /// Browser origins allowed to open sockets (`CORS_ALLOWED_ORIGINS`).
    let cors: CORSPolicy

    let metrics: ServerMetrics
    /// Where admission, subscriptions and client messages run (sockets keep no task).
    let tasks: ConnectionTasks

    // A class: every socket's `WebSocketConnection` holds it, one reference each.
    init(
        auth: AuthMiddleware, messages: MessageStore, rooms: RoomStore, realtime: RealtimeStore, hub: RealtimeHub,
        presence: PresenceTracker, notifier: ChangeNotifier, files: FileURLs, settings: AppConfiguration.RealtimeSettings,
        sockets: OpenSockets, rateLimits: AppConfiguration.RateLimitSettings, sends: RateLimiter<Int64>, cors: CORSPolicy,
        metrics: ServerMetrics, tasks: ConnectionTasks
    ) {
        self.auth = auth
        self.messages = messages
        self.rooms = rooms
        self.realtime = realtime
        self.hub = hub
        self.presence = presence
        self.notifier = notifier
        self.files = files
        self.settings = settings
        self.sockets = sockets
        self.rateLimits = rateLimits
        self.sends = sends
        self.cors = cors
        self.metrics = metrics
        self.tasks = tasks
    }

    struct Rejection: Error {
        var code: Int
        var reason: String
    }

    func addRoutes(to router: Router<ChatWebSocketContext>, registry: RouteRegistry) {
        registry.recordWebSocket("chat/ws/:room_id")
        registry.recordWebSocket("chat/ws")
        // Admission runs before the upgrade is answered (`ChatServerChannel`): a room socket
        // starts from the room's newest change at that moment, so a message the client sends
        // right after the socket opened (over REST, say) cannot slip past it. Refusals still
        // upgrade, then close with the code (browsers cannot read an HTTP error of a
        // WebSocket request).
        router.get("chat/ws/:room_id") { request, context -> HTTPResponse.Status in
            context.admission.set(await self.admit(request, context: context, room: true))
            return .ok
        }
        router.get("chat/ws") { request, context -> HTTPResponse.Status in
            context.admission.set(await self.admit(request, context: context, room: false))
            return .ok
        }
    }

    private var limits: SocketSession.Limits {
        .init(frames: settings.outboundQueueFrames, bytes: settings.outboundQueueBytes, dropped: metrics.framesDropped)
    }

    // MARK: Admission

    private func admit(_ request: Request, context: ChatWebSocketContext, room: Bool) async -> Admission {
        do {
            guard cors.admitsWebSocket(origin: request.headers[.origin]) else {
                throw Rejection(code: 4403, reason: "Origin not allowed")
            }
            let (user, tokenExpiresAt) = try await authenticate(request)
            guard room else { return .admitted(user, .userStream, catchUp: nil, tokenExpiresAt: tokenExpiresAt) }
            let (roomID, catchUp) = try await admitToRoom(request, context: context, user: user)
            return .admitted(user, .room(roomID), catchUp: catchUp, tokenExpiresAt: tokenExpiresAt)
        } catch let rejection as Rejection {
            return .rejected(code: rejection.code, reason: rejection.reason)
        } catch {
            return .rejected(code: 1011, reason: "Server error, try again later")
        }
    }

    private func authenticate(_ request: Request) async throws -> (user: User, tokenExpiresAt: Date) {
        guard let token = request.uri.queryParameters.get("token") ?? AuthMiddleware.bearerToken(request) else {
            throw Rejection(code: 4401, reason: "Missing token")
        }
        do {
            return try await auth.authenticateWithExpiry(token: token)
        } catch let error as APIError where error.status == .unauthorized {
            throw Rejection(code: 4401, reason: "Invalid or expired token")
        } catch let error as APIError where error.status == .forbidden {
            throw Rejection(code: 4403, reason: error.detail)
        }
    }

    /// The room, and where its socket starts: after the client's `last_seq` (every change),
    /// or after its `last_message_id` (the messages, then every change from the upgrade on),
    /// or else at the room's newest change when the upgrade was answered. `last_seq` wins
    /// when both are given.
    private func admitToRoom(_ request: Request, context: ChatWebSocketContext, user: User) async throws
        -> (roomID: Int64, catchUp: RealtimeHub.CatchUp)
    {
        let lastMessageID: Int64?
        let lastSeq: Int64?
        do {
            lastMessageID = try request.queryID("last_message_id")
            lastSeq = try request.queryID("last_seq")
        } catch let error as APIError {
            throw Rejection(code: 4400, reason: error.detail)
        }
        guard let text = context.parameters.get("room_id"), let roomID = Int64(text), roomID > 0 else {
            throw Rejection(code: 4404, reason: "Room not found")
        }
        // The window first: the membership checked after it holds for every change up to its
        // head, so a leave numbered up to there (delivered late here) is an earlier one.
        let window = try await realtime.changeWindow(roomID: roomID)
        do {
            try await rooms.requireParticipant(roomID: roomID, userID: user.id)
        } catch ChatError.notFound(let detail) {
            throw Rejection(code: 4404, reason: detail)
        } catch ChatError.forbidden(let detail) {
            throw Rejection(code: 4403, reason: detail)
        }
        guard let window else {
            throw Rejection(code: 4404, reason: "Room not found")
        }
        if let lastSeq {
            // Older than the kept window, or ahead of the room: the client must reload.
            guard window.canReplay(after: lastSeq) else {
                return (
                    roomID,
                    .init(messagesAfter: nil, changesAfter: window.lastSeq, memberThrough: window.lastSeq, resync: true)
                )
            }
            return (roomID, .init(messagesAfter: nil, changesAfter: lastSeq, memberThrough: window.lastSeq))
        }
        // Not past the newest message: a cursor from the future would skip what comes next.
        return (
            roomID,
            .init(
                messagesAfter: lastMessageID.map { min($0, window.lastMessageID) }, changesAfter: window.lastSeq,
                memberThrough: window.lastSeq)
        )
    }

    // MARK: Serving an admitted socket

    /// An admitted socket as the controller serves it.
    struct AdmittedSocket: Sendable {
        let session: SocketSession
        let catchUp: RealtimeHub.CatchUp?
        let input: SocketInput
        /// Succeeded once the subscription's task has ended (the socket is live, or closing).
        let subscription: EventLoopPromise<Void>

        var roomID: Int64 {
            if case .room(let id) = session.kind { return id }
            return 0
        }

        /// Its label in `chat_ws_open_sockets`.
        var metricsKind: String { roomID == 0 ? "user" : "room" }
    }

    /// Makes the session of a socket just upgraded, on its channel's event loop: its outbox
    /// goes to the head of the pipeline and its buffers are bounded.
    func open(
        user: User, kind: SocketSession.Kind, catchUp: RealtimeHub.CatchUp?, tokenExpiresAt: Date,
        connection: WebSocketConnection, channel: any Channel
    ) throws -> AdmittedSocket {
        let session = SocketSession(
            user: user, kind: kind, limits: limits, eventLoop: channel.eventLoop, tokenExpiresAt: tokenExpiresAt,
            connection: connection)
        if let options = channel.syncOptions {
            try options.setOption(ChannelOptions.writeBufferWaterMark, value: Self.writeBufferWaterMark)
            try options.setOption(ChannelOptions.socketOption(.so_sndbuf), value: SocketOptionValue(Self.kernelSendBufferBytes))
            // A channel keeps its last receive buffer for the next read: client frames are
            // small, so start small (NIO grows it for a client that sends more).
            try options.setOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
        }
        try session.install(in: channel.pipeline.syncOperations)
        return AdmittedSocket(
            session: session, catchUp: catchUp, input: SocketInput(limits: rateLimits),
            subscription: channel.eventLoop.makePromise())
    }

    /// Counts the socket as open (it is asked to close at once when its user holds too many,
    /// or the instance is shutting down) and starts its subscription, with its catch-up, in
    /// a task that ends once the socket is live.
    func opened(_ socket: AdmittedSocket, channel: any Channel) {
        metrics.openSockets(kind: socket.metricsKind).increment()
        sockets.opened(socket.session, channel: channel)
        let hub = self.hub
        let started = tasks.start {
            do {
                switch socket.session.kind {
                case .room(let roomID):
                    try await hub.subscribe(
                        socket.session, roomID: roomID,
                        catchUp: socket.catchUp ?? .init(messagesAfter: nil, changesAfter: 0, memberThrough: 0))
                case .userStream:
                    try await hub.subscribeUserStream(socket.session)
                }
            } catch {
                socket.session.requestClose(.init(code: 1011, reason: "Server error, try again later"))
            }
            socket.subscription.succeed()
        }
        if !started {
            socket.session.requestClose(.goingAway)
            socket.subscription.succeed()
        }
    }

    /// The socket's connection closed.
    func disconnected(_ socket: AdmittedSocket) {
        sockets.closed(socket.session)
    }

    /// Does what the socket's connection handed over (one item at a time per socket, in the
    /// order `SocketWork` describes).
    func perform(_ work: SocketWork, for socket: AdmittedSocket) async {
        let session = socket.session
        switch work {
        case .start:
            // Presence is recorded alongside the subscription (a slow presence write never
            // delays delivery), and client messages wait for both: once the server answers
            // one, the socket is live and the user shows as online everywhere.
            await presence.socketOpened(userID: session.user.id, userName: session.user.name, roomID: socket.roomID)
            await session.subscribed()
        case .message(let message):
            // What the client sent before its own close (a close frame, a FIN, a dropped
            // connection: `.normal`) is still handled, as RFC 6455 has it; after a close the
            // server asked for (removal, 4408, shutdown), nothing more is.
            if let request = session.closeRequest, request != .normal { return }
            await handle(message, from: session, input: socket.input)
        case .finish(let request):
            try? await socket.subscription.futureResult.get()
            hub.unsubscribe(session)
            if socket.input.isTyping {
                notifier.send(
                    .live(
                        roomID: socket.roomID,
                        .typing(userID: session.user.id, userName: session.user.name, isTyping: false)))
            }
            presence.socketClosed(userID: session.user.id, userName: session.user.name, roomID: socket.roomID)
            metrics.openSockets(kind: socket.metricsKind).decrement()
            if request == .tooSlow { metrics.slowClientCloses.increment() }
        }
    }

    /// Bytes a socket may have in flight below its outbox's backlog: NIO's write buffer
    /// (writes wait above it) and the kernel's send buffer. Small, so that what a client that
    /// falls behind still has to read before its 4408 close frame is small too.
    static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 16 * 1024, high: 32 * 1024)
    static let kernelSendBufferBytes = 64 * 1024
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 1 << 16)

    // MARK: Client frames

    private func handle(_ message: ClientMessage, from session: SocketSession, input: SocketInput) async {
        /// An `error` frame for a frame that cannot be handled, within the socket's frame budget.
        func refuse(_ detail: String) {
            if input.admitOther(session) { session.send(ServerFrame.error(detail)) }
        }
        guard case .text(let text) = message else {
            return refuse("Binary frames are not supported; send JSON text")
        }
        guard text.utf8.count <= settings.maxInboundMessageBytes else {
            return refuse("Frame too large (limit \(settings.maxInboundMessageBytes) bytes)")
        }
        let frame: ClientFrame
        do {
            frame = try ChatJSON.decoder().decode(ClientFrame.self, from: Data(text.utf8))
        } catch let error as DecodingError {
            return refuse("Invalid frame: \(APIError.describe(error))")
        } catch {
            return refuse("Invalid frame: not JSON")
        }
        // Rate limits: messages count against the user's sends (an `error` frame when over),
        // a typing flood is dropped, and any other frame over WS_FRAMES_PER_SECOND gets one
        // `error` frame and is not handled.
        switch frame.type {
        case "message": break
        case "typing": guard input.admitTyping() else { return }
        default: guard input.admitOther(session) else { return }
        }
        if frame.type == "ping" {
            session.send(ServerFrame.pong)
            return
        }
        guard case .room(let roomID) = session.kind else {
            session.send(ServerFrame.error("The user stream accepts only ping frames"))
            return
        }
        do {
            switch frame.type {
            case "message":
                try await sendMessage(frame, roomID: roomID, session: session)
            case "typing":
                guard let isTyping = frame.isTyping else {
                    throw ChatError.invalid("is_typing (boolean) is required")
                }
                input.isTyping = isTyping
                notifier.send(
                    .live(roomID: roomID, .typing(userID: session.user.id, userName: session.user.name, isTyping: isTyping)))
            case "read":
                _ = try await messages.markRead(roomID: roomID, userID: session.user.id, upTo: frame.messageId)
            default:
                throw ChatError.invalid("Unknown frame type '\(frame.type)'; expected message, typing, read or ping")
            }
        } catch {
            let apiError = APIError.from(error)
            switch apiError?.status {
            case .forbidden?: session.requestClose(.removed)
            case .notFound? where frame.type != "read": session.requestClose(.init(code: 4404, reason: "Room not found"))
            default:
                session.send(
                    ServerFrame.error(apiError?.detail ?? "Server error, try again", clientMessageID: frame.clientMessageId))
            }
        }
    }

    private func sendMessage(_ frame: ClientFrame, roomID: Int64, session: SocketSession) async throws {
        try sends.admitSend(by: session.user.id)
        let type: MessageType
        if let name = frame.messageType {
            guard let known = MessageType(rawValue: name) else {
                throw ChatError.invalid("Unsupported message_type '\(name)'")
            }
            type = known
        } else {
            type = .text
        }
        guard !type.carriesFile else {
            throw ChatError.invalid("\(type.rawValue) messages are uploaded with POST /chat/rooms/\(roomID)/messages/")
        }
        let outcome = try await messages.send(
            roomID: roomID, senderID: session.user.id,
            draft: MessageDraft(
                content: frame.content, type: type, replyToMessageID: frame.replyToMessageId,
                clientMessageID: frame.clientMessageId))
        if !outcome.created {
            // A retried client_message_id: nothing new to broadcast, but the sender needs its ack.
            session.send(ServerFrame.message(outcome.message, files: files))
        }
    }
}

/// What a socket's client frames have used up: whether its user is shown as typing (to send
/// `false` when it closes), and its frame budgets.
final class SocketInput: @unchecked Sendable {
    // Touched only by the socket's work (`SocketWork`), one item at a time.
    var isTyping = false
    private let typingLimit: RateLimit
    private let otherLimit: RateLimit
    private var typingBucket: TokenBucket
    private var otherBucket: TokenBucket
    private var warned = false

    init(limits: AppConfiguration.RateLimitSettings) {
        typingLimit = limits.typingPerSecond == 0 ? .off : .perSecond(limits.typingPerSecond, burst: 5)
        otherLimit = limits.framesPerSecond == 0 ? .off : .perSecond(limits.framesPerSecond, burst: 2 * limits.framesPerSecond)
        let now = TokenBucket.now
        typingBucket = TokenBucket(typingLimit, now: now)
        otherBucket = TokenBucket(otherLimit, now: now)
    }

    /// A typing frame within the budget; one over it is dropped without a word.
    func admitTyping() -> Bool {
        typingBucket.take(typingLimit, now: TokenBucket.now) == 0
    }

    /// Any other frame within the budget; over it, the first dropped frame gets an `error`.
    func admitOther(_ session: SocketSession) -> Bool {
        guard otherBucket.take(otherLimit, now: TokenBucket.now) == 0 else {
            if !warned { session.send(ServerFrame.error("Too many frames; slow down")) }
            warned = true
            return false
        }
        warned = false
        return true
    }
}
