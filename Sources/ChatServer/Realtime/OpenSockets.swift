import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// The WebSockets open on this instance, so that a shutdown can tell each client that the
/// server is going away (1001) before the HTTP server stops, and cut off those that do not go.
public final class OpenSockets: Sendable {
    private struct Entry {
        var session: SocketSession
        var channel: any Channel
    }

    private struct State {
        var sockets: [Int: Entry] = [:]
        var closing: SocketSession.CloseRequest?
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public var count: Int { state.withLockedValue { $0.sockets.count } }

    /// Records an open socket. Once a shutdown has begun, the socket is asked to close at once.
    func opened(_ session: SocketSession, channel: any Channel) {
        let closing = state.withLockedValue { state in
            state.sockets[session.id] = Entry(session: session, channel: channel)
            return state.closing
        }
        if let closing { session.requestClose(closing) }
    }

    func closed(_ session: SocketSession) {
        _ = state.withLockedValue { $0.sockets.removeValue(forKey: session.id) }
    }

    /// Asks every socket, and every socket opened from now on, to close with `request`.
    func closeAll(_ request: SocketSession.CloseRequest) {
        let sessions = state.withLockedValue { state in
            state.closing = request
            return state.sockets.values.map(\.session)
        }
        for session in sessions { session.requestClose(request) }
    }

    /// Closes the connections of the sockets still open, whether or not their close
    /// handshake finished (a client that does not read cannot hold the process).
    func cutOffAll() {
        let channels = state.withLockedValue { $0.sockets.values.map(\.channel) }
        for channel in channels { channel.close(promise: nil) }
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
            sockets.cutOffAll()
        }
    }
}
