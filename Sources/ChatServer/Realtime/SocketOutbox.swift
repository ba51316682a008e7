import NIOCore
import NIOWebSocket

/// The write side of one WebSocket, as a handler at the tail of its channel's pipeline.
///
/// Frames reach it already encoded (one `ByteBuffer` shared by every socket that receives
/// the same frame) and are written on the channel's event loop, with no task per socket: a
/// fan-out to a thousand sockets is one hop per event loop (`OutboundBatch`), not a thousand
/// task wake-ups. While the channel is writable (NIO's own buffer below its high-water mark)
/// a frame goes straight to the socket; otherwise it waits here, in order, until the channel
/// drains. The frames waiting here are the socket's unsent backlog: past the session's limit
/// (`WS_OUTBOUND_QUEUE_FRAMES` / `_BYTES`) the backlog is dropped and the session asked to
/// close with 4408, so a client that does not read costs bounded memory and never slows the
/// others.
///
/// Every member is touched on the channel's event loop only (hence `@unchecked Sendable`:
/// other threads reach it solely through `eventLoop.execute`).
final class SocketOutbox: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = Never

    let eventLoop: any EventLoop
    private let limits: SocketSession.Limits
    /// Told when the backlog passes the limit. Weak: the session owns this outbox.
    weak var session: SocketSession?
    private var context: ChannelHandlerContext?
    private var backlog = CircularBuffer<ByteBuffer>()
    private var backlogBytes = 0
    /// Catch-up waits for the backlog to drain to half before it sends its next page.
    private var spaceWaiters: [EventLoopPromise<Void>] = []
    private var closed = false

    init(eventLoop: any EventLoop, limits: SocketSession.Limits) {
        self.eventLoop = eventLoop
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        close()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        close()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { drain() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: On the event loop

    /// Writes `frame` (flushed by `flush()`), or queues it behind the backlog. Past the limit
    /// the backlog is dropped and the session closes with 4408.
    func enqueue(_ frame: ByteBuffer) {
        eventLoop.preconditionInEventLoop()
        guard !closed, let context else { return }
        if backlog.isEmpty && context.channel.isWritable {
            context.write(NIOAny(Self.textFrame(frame)), promise: nil)
            return
        }
        if !backlog.isEmpty && (backlog.count >= limits.frames || backlogBytes + frame.readableBytes > limits.bytes) {
            limits.dropped?.increment()
            close()
            session?.requestClose(.tooSlow)
            return
        }
        backlog.append(frame)
        backlogBytes += frame.readableBytes
    }

    /// Queues `frames` whatever the limit (a catch-up page, smaller than the limit), and
    /// returns once the backlog is at most half the limit, so a catch-up paces itself by the
    /// client's reading instead of overflowing.
    func enqueuePaced(_ frames: [ByteBuffer]) -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        guard !closed, let context else { return eventLoop.makeSucceededVoidFuture() }
        for frame in frames {
            if backlog.isEmpty && context.channel.isWritable {
                context.write(NIOAny(Self.textFrame(frame)), promise: nil)
            } else {
                backlog.append(frame)
                backlogBytes += frame.readableBytes
            }
        }
        context.flush()
        if hasHalfRoom { return eventLoop.makeSucceededVoidFuture() }
        let promise = eventLoop.makePromise(of: Void.self)
        spaceWaiters.append(promise)
        return promise.futureResult
    }

    func flush() {
        eventLoop.preconditionInEventLoop()
        context?.flush()
    }

    /// Stops writing: what is queued is dropped (the session is closing, its close frame
    /// goes next) and waiting catch-ups resume.
    func close() {
        guard !closed else { return }
        closed = true
        backlog.removeAll()
        backlogBytes = 0
        resumeSpaceWaiters()
    }

    private var hasHalfRoom: Bool {
        backlog.isEmpty || (backlog.count <= limits.frames / 2 && backlogBytes <= limits.bytes / 2)
    }

    private func drain() {
        guard !closed, let context else { return }
        var wrote = false
        while context.channel.isWritable, let frame = backlog.popFirst() {
            backlogBytes -= frame.readableBytes
            context.write(NIOAny(Self.textFrame(frame)), promise: nil)
            wrote = true
        }
        if wrote { context.flush() }
        if hasHalfRoom { resumeSpaceWaiters() }
    }

    private func resumeSpaceWaiters() {
        let waiters = spaceWaiters
        spaceWaiters = []
        for waiter in waiters { waiter.succeed() }
    }

    private static func textFrame(_ data: ByteBuffer) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, data: data)
    }
}

/// Frames for many sockets, handed to each event loop in one hop: `add` them in the order
/// each socket must receive them, then `submit()`. Sockets of one event loop get their frames
/// in `add` order; one flush per socket follows.
struct OutboundBatch {
    private var byLoop: [ObjectIdentifier: (loop: any EventLoop, items: [(SocketOutbox, ByteBuffer)])] = [:]

    var isEmpty: Bool { byLoop.isEmpty }

    mutating func add(_ frame: ByteBuffer, to outbox: SocketOutbox) {
        let key = ObjectIdentifier(outbox.eventLoop)
        if byLoop[key] == nil {
            byLoop[key] = (outbox.eventLoop, [(outbox, frame)])
        } else {
            byLoop[key]!.items.append((outbox, frame))
        }
    }

    /// Hands the frames over. Call it where the order between batches is decided (inside the
    /// lock that orders them): event loops run what they are given in submission order.
    func submit() {
        for (loop, items) in byLoop.values {
            loop.execute {
                var flushed = Set<ObjectIdentifier>()
                for (outbox, frame) in items { outbox.enqueue(frame) }
                for (outbox, _) in items where flushed.insert(ObjectIdentifier(outbox)).inserted { outbox.flush() }
            }
        }
    }
}
