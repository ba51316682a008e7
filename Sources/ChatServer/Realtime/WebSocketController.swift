import ChatCore
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// The request context of WebSocket upgrades. It keeps the channel, so that a socket whose
/// client stopped reading can be cut off even when its close frame cannot be written, and
/// the admission decided before the upgrade response.
struct ChatWebSocketContext: RequestContext, WebSocketRequestContext {
    var coreContext: CoreRequestContextStorage
    let webSocketSlot = WebSocketReferenceSlot()
    let channel: any Channel
    let admission = AdmissionSlot()

    var webSocket: WebSocketHandlerReference<ChatWebSocketContext> { webSocketSlot.reference }

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

/// Works around a retain cycle in hummingbird-websocket 2.8.1: its router stores the request
/// context inside the context's own `webSocket` box (`WebSocketHandlerReference.handler`) and
/// never clears it, so every upgrade, accepted or refused, leaked its context, channel and
/// handler (about 7 KB). The box lives in this slot instead, and the socket's handler empties
/// the slot as soon as it runs, which breaks the cycle.
final class WebSocketReferenceSlot: Sendable {
    private let box = NIOLockedValueBox<WebSocketHandlerReference<ChatWebSocketContext>?>(.init())

    /// Upgrade contexts alive (`chat_ws_upgrade_contexts`): back to the number of open
    /// sockets once upgrades end, unless a context leaks (the test of the workaround above).
    static let alive = NIOLockedValueBox(0)

    init() {
        Self.alive.withLockedValue { $0 += 1 }
    }

    deinit {
        Self.alive.withLockedValue { $0 -= 1 }
    }

    var reference: WebSocketHandlerReference<ChatWebSocketContext> { box.withLockedValue { $0 } ?? .init() }

    func release() {
        box.withLockedValue { $0 = nil }
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
    func set(_ admission: Admission) { value.withLockedValue { $0 = admission } }
    var admission: Admission? { value.withLockedValue { $0 } }
}

/// `ws /chat/ws/{room_id}` (a room) and `ws /chat/ws` (the user's room list).
///
/// The upgrade is always accepted; a socket that may not stay is then closed with 4401
/// (token), 4400 (query), 4404 (room) or 4403 (not a participant) and a reason.
struct WebSocketController {
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

    struct Rejection: Error {
        var code: Int
        var reason: String
    }

    func addRoutes(to router: Router<ChatWebSocketContext>, registry: RouteRegistry) {
        registry.recordWebSocket("chat/ws/:room_id")
        registry.recordWebSocket("chat/ws")
        // Admission runs before the upgrade is answered: a room socket starts from the room's
        // newest change at that moment, so a message the client sends right after the
        // socket opened (over REST, say) cannot slip past it. Refusals still upgrade, then
        // close with the code (browsers cannot read an HTTP error of a WebSocket request).
        router.ws(
            "chat/ws/:room_id",
            shouldUpgrade: { request, context in
                context.admission.set(await inShortTask { await admit(request, context: context, room: true) })
                return .upgrade([:])
            }
        ) { inbound, outbound, context in
            await serve(inbound: inbound, outbound: outbound, context: context)
        }
        router.ws(
            "chat/ws",
            shouldUpgrade: { request, context in
                context.admission.set(await inShortTask { await admit(request, context: context, room: false) })
                return .upgrade([:])
            }
        ) { inbound, outbound, context in
            await serve(inbound: inbound, outbound: outbound, context: context)
        }
    }

    private func serve(
        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
        context: WebSocketRouterContext<ChatWebSocketContext>
    ) async {
        context.requestContext.webSocketSlot.release()
        switch context.requestContext.admission.admission {
        case .admitted(let user, let kind, let catchUp, let tokenExpiresAt):
            let channel = context.requestContext.channel
            let session = SocketSession(
                user: user, kind: kind, limits: limits, eventLoop: channel.eventLoop, tokenExpiresAt: tokenExpiresAt)
            sockets.opened(session, channel: channel)
            await Self.boundBuffers(of: channel)
            let request: SocketSession.CloseRequest
            do {
                try await session.install(on: channel)
                request = await run(session, catchUp: catchUp, inbound: inbound)
            } catch {
                request = .normal  // the connection closed before the socket was set up
            }
            if request == .tooSlow {
                metrics.slowClientCloses.increment()
                await Self.closeBehindClient(channel, request)
            } else if request == .pingTimeout {
                // Presumed gone: the close frame is a courtesy, nobody waits for an answer.
                channel.writeAndFlush(Self.closeFrame(request, allocator: channel.allocator), promise: nil)
                try? await channel.close()
            } else {
                await close(outbound, context: context, code: request.code, reason: request.reason)
            }
            sockets.closed(session)
        case .rejected(let code, let reason):
            await close(outbound, context: context, code: code, reason: reason)
        case nil:
            await close(outbound, context: context, code: 1011, reason: "Server error, try again later")
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

    /// Serves the socket until it is asked to close: the subscription (and catch-up) in a
    /// child task that ends once the socket is live, client frames here. Frames to the client
    /// need no task: the hub and this controller hand them to the session's outbox. A close
    /// requested from elsewhere (removal, 4408, shutdown, ping timeout) ends the reading: the
    /// outbox tells the inbound stream that the input is over. An idle socket is thus one
    /// suspended task, its connection's.
    private func run(
        _ session: SocketSession, catchUp: RealtimeHub.CatchUp?, inbound: WebSocketInboundStream
    ) async -> SocketSession.CloseRequest {
        let roomID: Int64
        if case .room(let id) = session.kind { roomID = id } else { roomID = 0 }
        let open = metrics.openSockets(kind: roomID == 0 ? "user" : "room")
        open.increment()
        defer { open.decrement() }
        let input = SocketInput(limits: rateLimits)
        // Discarding: the finished subscription frees its memory at once instead of waiting
        // in the group for the socket's lifetime.
        await withDiscardingTaskGroup { group in
            group.addTask {
                do {
                    switch session.kind {
                    case .room(let roomID):
                        try await hub.subscribe(
                            session, roomID: roomID, catchUp: catchUp ?? .init(messagesAfter: nil, changesAfter: 0, memberThrough: 0))
                    case .userStream:
                        try await hub.subscribeUserStream(session)
                    }
                } catch {
                    session.requestClose(.init(code: 1011, reason: "Server error, try again later"))
                }
            }
            // Presence is recorded alongside the subscription (a slow presence write never
            // delays delivery), and client frames wait for both: once the server answers a
            // frame, the socket is live and the user shows as online everywhere.
            await inShortTask {
                await presence.socketOpened(userID: session.user.id, userName: session.user.name, roomID: roomID)
            }
            await session.subscribed()
            do {
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                while !session.isClosing, let message = try await messages.next() {
                    await handle(message, from: session, input: input)
                }
                session.requestClose(.normal)
            } catch {
                // A message over 1 MiB, or a frame that breaks the protocol.
                session.requestClose(.init(code: 1009, reason: "Message too large or malformed frame"))
            }
        }
        let request = await session.closeRequested()
        hub.unsubscribe(session)
        if input.isTyping {
            notifier.send(
                .live(roomID: roomID, .typing(userID: session.user.id, userName: session.user.name, isTyping: false)))
        }
        presence.socketClosed(userID: session.user.id, userName: session.user.name, roomID: roomID)
        return request
    }

    /// Bytes a socket may have in flight below its outbox's backlog: NIO's write buffer
    /// (writes wait above it) and the kernel's send buffer. Small, so that what a client that
    /// falls behind still has to read before its 4408 close frame is small too.
    static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 16 * 1024, high: 32 * 1024)
    static let kernelSendBufferBytes = 64 * 1024
    /// How long a client that fell behind has to read its close frame before the connection is cut.
    static let slowClientGrace = Duration.seconds(30)

    private static func boundBuffers(of channel: any Channel) async {
        try? await channel.setOption(ChannelOptions.writeBufferWaterMark, value: writeBufferWaterMark).get()
        try? await channel.setOption(ChannelOptions.socketOption(.so_sndbuf), value: SocketOptionValue(kernelSendBufferBytes)).get()
        // A channel keeps its last receive buffer for the next read: client frames are small,
        // so start small (NIO grows it for a client that sends more).
        try? await channel.setOption(ChannelOptions.recvAllocator, value: receiveBuffers).get()
    }

    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 1 << 16)

    /// Closes a socket whose client fell behind (4408). Its unsent frames were dropped
    /// (`SocketSession`); the close frame goes to the channel directly, not through the
    /// WebSocket writer (which waits while the client is not reading), so it is the next
    /// thing the client reads after the few kilobytes already in flight. Then the output is
    /// shut (a FIN follows the frame) and the connection is closed once the client hung up or
    /// after `slowClientGrace`.
    private static func closeBehindClient(_ channel: any Channel, _ request: SocketSession.CloseRequest) async {
        let frame = closeFrame(request, allocator: channel.allocator)
        _ = await finished(within: slowClientGrace) {
            guard (try? await channel.writeAndFlush(frame)) != nil else { return }
            try? await channel.close(mode: .output)
            try? await channel.closeFuture.get()
        }
        try? await channel.close()
    }

    private static func closeFrame(_ request: SocketSession.CloseRequest, allocator: ByteBufferAllocator) -> WebSocketFrame {
        var data = allocator.buffer(capacity: 2 + request.reason.utf8.count)
        data.write(webSocketErrorCode: .init(codeNumber: request.code))
        data.writeString(request.reason)
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }

    /// Sends the close frame; if the client does not read (so the frame cannot be written
    /// within 10 seconds), closes the connection outright.
    private func close(
        _ outbound: WebSocketOutboundWriter, context: WebSocketRouterContext<ChatWebSocketContext>, code: Int,
        reason: String
    ) async {
        let closeCode: WebSocketErrorCode = code == 1000 ? .normalClosure : .init(codeNumber: code)
        if !(await Self.finished(within: .seconds(10)) { try? await outbound.close(closeCode, reason: reason) }) {
            try? await context.requestContext.channel.close()
        }
    }

    /// Runs `work`, abandoning it after `timeout`: whether it finished in time.
    private static func finished(within timeout: Duration, _ work: @escaping @Sendable () async -> Void) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await work()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    // MARK: Client frames

    private func handle(_ message: WebSocketMessage, from session: SocketSession, input: SocketInput) async {
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
private final class SocketInput: @unchecked Sendable {
    // Touched only by the socket's inbound task and, after it ended, by the handler.
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

/// Runs `work` in a child task of its own and returns its result.
///
/// A task keeps the stack slabs its deepest call needed until the task ends, and a socket's
/// tasks live as long as the socket: a database round trip on one of them (admission,
/// presence) would leave several kilobytes behind on every idle socket. Run there, the
/// slabs go with the child.
func inShortTask<T: Sendable>(_ work: @escaping @Sendable () async -> T) async -> T {
    await withTaskGroup(of: T.self) { group in
        group.addTask { await work() }
        return await group.next()!
    }
}
