import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// The WebSockets open on this instance: so that a shutdown can tell each client that the
/// server is going away (1001) before the HTTP server stops, and cut off those that do not go;
/// so that a deactivated user's and an expired token's sockets can be ended; and so that one
/// user cannot hold more than `maxPerUser` of them.
public final class OpenSockets: Sendable {
    private struct Entry {
        var session: SocketSession
        var channel: any Channel
    }

    private struct State {
        var sockets: [Int: Entry] = [:]
        var perUser: [Int64: Int] = [:]
        var closing: SocketSession.CloseRequest?
    }

    private let state = NIOLockedValueBox(State())
    let maxPerUser: Int

    public init(maxPerUser: Int = 100) {
        self.maxPerUser = max(1, maxPerUser)
    }

    public var count: Int { state.withLockedValue { $0.sockets.count } }

    /// Records an open socket. It is asked to close at once when a shutdown has begun, or
    /// when its user already holds `maxPerUser` sockets here (4429).
    func opened(_ session: SocketSession, channel: any Channel) {
        let closing = state.withLockedValue { state -> SocketSession.CloseRequest? in
            state.sockets[session.id] = Entry(session: session, channel: channel)
            state.perUser[session.user.id, default: 0] += 1
            if let closing = state.closing { return closing }
            return state.perUser[session.user.id, default: 0] > maxPerUser ? .tooManySockets : nil
        }
        if let closing { session.requestClose(closing) }
    }

    func closed(_ session: SocketSession) {
        state.withLockedValue { state in
            guard state.sockets.removeValue(forKey: session.id) != nil else { return }
            state.perUser[session.user.id, default: 1] -= 1
            if state.perUser[session.user.id] == 0 { state.perUser[session.user.id] = nil }
        }
    }

    /// Asks every socket, and every socket opened from now on, to close with `request`.
    func closeAll(_ request: SocketSession.CloseRequest) {
        let sessions = state.withLockedValue { state in
            state.closing = request
            return state.sockets.values.map(\.session)
        }
        for session in sessions { session.requestClose(request) }
    }

    /// Asks every open socket that `matches` to close with `request`.
    func close(where matches: (SocketSession) -> Bool, with request: SocketSession.CloseRequest) {
        let sessions = state.withLockedValue { $0.sockets.values.map(\.session).filter(matches) }
        for session in sessions { session.requestClose(request) }
    }

    /// The keep-alive's tick: pings every open socket, and asks those that sent nothing since
    /// the previous tick to close (`pingTimeout`). One hop per event loop for all its sockets.
    func keepAlive() {
        let sessions = state.withLockedValue { $0.sockets.values.map(\.session) }
        for (_, group) in Dictionary(grouping: sessions, by: { ObjectIdentifier($0.outbox.eventLoop) }) {
            group[0].outbox.eventLoop.execute {
                for session in group where !session.outbox.keepAlive() { session.requestClose(.pingTimeout) }
            }
        }
    }

    /// Closes the connections of the sockets still open, whether or not their close
    /// handshake finished (a client that does not read cannot hold the process), and returns
    /// once they are closed (each socket's last work is then queued).
    func cutOffAll() async {
        let channels = state.withLockedValue { $0.sockets.values.map(\.channel) }
        for channel in channels { channel.close(promise: nil) }
        for channel in channels { try? await channel.closeFuture.get() }
    }
}

/// On graceful shutdown (SIGTERM), before the HTTP server stops: closes every WebSocket with
/// 1001 so that clients reconnect (to another instance), waits up to `grace` for them to
/// go, then cuts off the rest. Run it in a service group after the application, so that it
/// is shut down first.
public struct WebSocketDrain: Service {
    let sockets: OpenSockets
    let grace: Duration
    let logger: Logger

    public init(sockets: OpenSockets, grace: Duration, logger: Logger) {
        self.sockets = sockets
        self.grace = grace
        self.logger = logger
    }

    public func run() async throws {
        try? await gracefulShutdown()
        let open = sockets.count
        logger.info("closing WebSockets for shutdown", metadata: ["chat.sockets": "\(open)"])
        sockets.closeAll(.goingAway)
        let deadline = ContinuousClock.now + grace
        while sockets.count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = sockets.count
        if left > 0 {
            logger.notice("cutting off WebSockets that did not close in time", metadata: ["chat.sockets": "\(left)"])
            await sockets.cutOffAll()
        }
    }
}

/// Pings every WebSocket of this instance every `interval` (`WS_PING_SECONDS`) and drops those
/// that sent nothing, not even the pong, since the previous ping: a phone that vanished
/// without closing its connection. One task and one timer for the whole instance, where the
/// WebSocket library's own keep-alive kept a task and a timer per socket.
public struct WebSocketKeepAlive: Service {
    let sockets: OpenSockets
    let interval: Duration

    public init(sockets: OpenSockets, interval: Duration) {
        self.sockets = sockets
        self.interval = interval
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                sockets.keepAlive()
            }
        }
    }
}
