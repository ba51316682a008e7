import ServiceLifecycle

/// Runs the short work of connections that keep no task of their own: a WebSocket upgrade's
/// admission (before the 101), a socket's subscription, and the client messages a socket
/// hands over (`WebSocketConnection`). Each piece is a child task of `run()`, so it is part
/// of the service group's structure, and ends when the piece does.
///
/// It stops taking work at graceful shutdown and returns once the work it took has ended.
/// List it before the services that work uses (the pool, the send writer) and after the
/// HTTP server's sockets are closed (`WebSocketDrain` runs first).
public final class ConnectionTasks: Service, Sendable {
    public typealias Work = @Sendable () async -> Void

    private let stream: AsyncStream<Work>
    private let continuation: AsyncStream<Work>.Continuation

    public init() {
        (stream, continuation) = AsyncStream.makeStream(of: Work.self)
    }

    /// Starts `work` as a child task of `run()` (queued until `run()` starts). False once the
    /// service has stopped taking work.
    @discardableResult
    func start(_ work: @escaping Work) -> Bool {
        if case .enqueued = continuation.yield(work) { return true }
        return false
    }

    public func run() async {
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                for await work in stream {
                    group.addTask { await work() }
                }
            } onGracefulShutdown: {
                self.continuation.finish()
            }
        }
    }
}
