import ChatCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// One open WebSocket as the hub sees it: who it belongs to, its write side
/// (`SocketOutbox`, on the channel's event loop) and why it is asked to close.
///
/// The hub never waits on a socket: it hands encoded frames to the outbox, which writes them
/// at the client's pace. A client that does not keep up lets the outbox's backlog pass its
/// bound; the session is then asked to close with 4408, so it costs bounded memory and
/// never slows the other subscribers.
final class SocketSession: Sendable {
    enum Kind: Sendable, Equatable {
        case room(Int64)
        case userStream
    }

    struct CloseRequest: Sendable, Equatable {
        var code: Int
        var reason: String

        static let normal = CloseRequest(code: 1000, reason: "")
        /// The instance is shutting down: reconnect (with a jittered delay) and resume.
        static let goingAway = CloseRequest(code: 1001, reason: "Server is shutting down; reconnect")
        static let tooSlow = CloseRequest(code: 4408, reason: "Client too slow: outbound queue limit reached")
        static let removed = CloseRequest(code: 4403, reason: "You are no longer a participant of this room")
        static let deactivated = CloseRequest(code: 4403, reason: "User account is deactivated")
        static let expired = CloseRequest(code: 4401, reason: "Token expired")
        static let tooManySockets = CloseRequest(code: 4429, reason: "Too many open sockets for this user")
        /// The client answered no ping for a whole `WS_PING_SECONDS`: gone, as far as we can tell.
        static let pingTimeout = CloseRequest(code: 1001, reason: "Ping timeout")
        /// A text message that is not UTF-8 (RFC 6455 8.1).
        static let invalidText = CloseRequest(code: 1007, reason: "Text message is not valid UTF-8")
        /// A client message over 1 MiB, or a frame that breaks the WebSocket protocol.
        static let malformed = CloseRequest(code: 1009, reason: "Message too large or malformed frame")
    }

    struct Limits: Sendable {
        var frames: Int
        var bytes: Int
        /// Counts frames refused at the bound.
        var dropped: Counter?
    }

    private struct State {
        var closeRequest: CloseRequest?
        var closeWaiter: CheckedContinuation<CloseRequest, Never>?
        var subscribed = false
        var subscribedWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private static let ids = NIOLockedValueBox(0)

    let id: Int
    let user: User
    let kind: Kind
    let limits: Limits
    /// The token's `exp`: the socket is closed (4401) once it passes.
    let tokenExpiresAt: Date
    /// Where this socket's frames are written; `install` puts it in the pipeline.
    let outbox: SocketOutbox
    /// The socket's protocol handler, told when the session is asked to close (it writes the
    /// close frame). Weak: the connection owns its session.
    weak let connection: WebSocketConnection?
    private let state = NIOLockedValueBox(State())

    /// Sessions alive (`chat_ws_sessions`): the number of open sockets, unless one leaks.
    static let alive = NIOLockedValueBox(0)

    deinit {
        Self.alive.withLockedValue { $0 -= 1 }
    }

    init(
        user: User, kind: Kind, limits: Limits, eventLoop: any EventLoop, tokenExpiresAt: Date = .distantFuture,
        connection: WebSocketConnection? = nil
    ) {
        Self.alive.withLockedValue { $0 += 1 }
        self.id = Self.ids.withLockedValue {
            $0 += 1
            return $0
        }
        self.user = user
        self.kind = kind
        self.limits = limits
        self.tokenExpiresAt = tokenExpiresAt
        self.connection = connection
        self.outbox = SocketOutbox(eventLoop: eventLoop, limits: limits)
        outbox.session = self
    }

    /// Puts the outbox at the head of `channel`'s pipeline, next to the socket: it writes
    /// encoded frames and sees every byte the client sends.
    func install(on channel: any Channel) async throws {
        try await channel.eventLoop.submit { try self.install(in: channel.pipeline.syncOperations) }.get()
    }

    /// `install(on:)`, on the channel's event loop.
    func install(in pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHandler(outbox, position: .first)
    }

    var isClosing: Bool { state.withLockedValue { $0.closeRequest != nil } }

    /// Why the session is closing (nil while it is open).
    var closeRequest: CloseRequest? { state.withLockedValue { $0.closeRequest } }

    /// Sends one frame (encoded once, whoever else receives it). Frames of one sender reach
    /// the socket in the order sent.
    func send(_ frame: WireFrame) {
        guard !isClosing else { return }
        let outbox = self.outbox
        outbox.eventLoop.execute {
            outbox.enqueue(frame)
            outbox.flush()
        }
    }

    func send(_ text: String) {
        send(WireFrame(text: text))
    }

    /// Sends `frames` in order and returns once the socket's backlog is at most half full
    /// (catch-up paces itself this way instead of overflowing). False when the session is
    /// closing.
    func sendPaced(_ frames: [WireFrame]) async -> Bool {
        guard !isClosing else { return false }
        if frames.isEmpty { return true }
        let outbox = self.outbox
        try? await outbox.eventLoop.flatSubmit { outbox.enqueuePaced(frames) }.get()
        return !isClosing
    }

    /// Marks the session as joined to its rooms (live frames reach it from now on).
    func markSubscribed() {
        let waiters = state.withLockedValue { state in
            state.subscribed = true
            defer { state.subscribedWaiters = [] }
            return state.subscribedWaiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Waits until `markSubscribed()` or a close request.
    func subscribed() async {
        await withCheckedContinuation { continuation in
            let now: Bool = state.withLockedValue { state in
                if state.subscribed || state.closeRequest != nil { return true }
                state.subscribedWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Asks the socket to close with `request`; the first request wins. Frames not yet
    /// written are dropped, so the close frame (written by the connection) is the next thing
    /// the client reads.
    func requestClose(_ request: CloseRequest) {
        let first: (waiters: [CheckedContinuation<Void, Never>], closeWaiter: CheckedContinuation<CloseRequest, Never>?)? =
            state.withLockedValue { state in
                guard state.closeRequest == nil else { return nil }
                state.closeRequest = request
                defer {
                    state.closeWaiter = nil
                    state.subscribedWaiters = []
                }
                return (state.subscribedWaiters, state.closeWaiter)
            }
        guard let first else { return }
        let outbox = self.outbox
        let connection = self.connection
        let close: @Sendable () -> Void = {
            outbox.close()
            connection?.closeRequested(request)
        }
        if outbox.eventLoop.inEventLoop { close() } else { outbox.eventLoop.execute(close) }
        first.waiters.forEach { $0.resume() }
        first.closeWaiter?.resume(returning: request)
    }

    /// Waits until someone asks the session to close.
    func closeRequested() async -> CloseRequest {
        await withCheckedContinuation { continuation in
            let request: CloseRequest? = state.withLockedValue { state in
                if let request = state.closeRequest { return request }
                state.closeWaiter = continuation
                return nil
            }
            if let request { continuation.resume(returning: request) }
        }
    }
}
