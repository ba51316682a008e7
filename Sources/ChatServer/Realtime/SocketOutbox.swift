import NIOCore

/// A server-to-client WebSocket frame on the wire (RFC 6455 section 5.2, unmasked): its
/// header and its payload, each encoded once and shared, byte for byte, by every socket that
/// sends it.
struct WireFrame: Sendable {
    var header: ByteBuffer
    var payload: ByteBuffer

    /// A final text frame carrying `payload` (UTF-8 JSON).
    init(text payload: ByteBuffer) {
        self.init(opcode: 0x1, payload: payload)
    }

    init(text: String) {
        self.init(text: ByteBuffer(string: text))
    }

    private init(opcode: UInt8, payload: ByteBuffer) {
        var header = ByteBuffer()
        header.reserveCapacity(10)
        header.writeInteger(0x80 | opcode)  // FIN
        let length = payload.readableBytes
        switch length {
        case ..<126: header.writeInteger(UInt8(length))
        case ...Int(UInt16.max):
            header.writeInteger(UInt8(126))
            header.writeInteger(UInt16(length))
        default:
            header.writeInteger(UInt8(127))
            header.writeInteger(UInt64(length))
        }
        self.header = header
        self.payload = payload
    }

    /// An empty ping (the server's keep-alive).
    static let ping = WireFrame(opcode: 0x9, payload: ByteBuffer())

    var byteCount: Int { header.readableBytes + payload.readableBytes }
}

/// The write side of one WebSocket, and the watch on its reads, as a handler at the head of
/// its channel's pipeline.
///
/// Frames reach it already encoded (`WireFrame`, shared by every socket that receives the
/// same frame) and are written on the channel's event loop, with no task per socket: a
/// fan-out to a thousand sockets is one hop per event loop (`OutboundBatch`), not a thousand
/// task wake-ups and a thousand copies. While the channel is writable (NIO's own buffer
/// below its high-water mark) a frame goes straight to the socket; otherwise it waits here,
/// in order, until the channel drains. The frames waiting here are the socket's unsent
/// backlog: past the session's limit (`WS_OUTBOUND_QUEUE_FRAMES` / `_BYTES`) the backlog is
/// dropped and the session asked to close with 4408, so a client that does not read costs
/// bounded memory and never slows the others. Frames the connection writes itself (close,
/// pong: `WebSocketConnection`, through NIO's frame encoder) pass through.
///
/// It also notes when the client last sent anything, for the keep-alive
/// (`WebSocketKeepAlive`), which needs no task or timer per socket either.
///
/// Every member is touched on the channel's event loop only (hence `@unchecked Sendable`:
/// other threads reach it solely through `eventLoop.execute`).
final class SocketOutbox: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let eventLoop: any EventLoop
    private let limits: SocketSession.Limits
    /// Told when the backlog passes the limit. Weak: the session owns this outbox.
    weak var session: SocketSession?
    private var context: ChannelHandlerContext?
    private var backlog = CircularBuffer<WireFrame>()
    private var backlogBytes = 0
    /// Catch-up waits for the backlog to drain to half before it sends its next page.
    private var spaceWaiters: [EventLoopPromise<Void>] = []
    private var closed = false
    /// When the client last sent bytes, and when the keep-alive last pinged it.
    private var lastRead = NIODeadline.now()
    private var lastPing: NIODeadline?

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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        context.fireChannelRead(data)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { drain() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: On the event loop

    /// Writes `frame` (flushed by `flush()`), or queues it behind the backlog. Past the limit
    /// the backlog is dropped and the session closes with 4408.
    func enqueue(_ frame: WireFrame) {
        eventLoop.preconditionInEventLoop()
        guard !closed, let context else { return }
        if !backlog.isEmpty && (backlog.count >= limits.frames || backlogBytes + frame.byteCount > limits.bytes) {
            limits.dropped?.increment()
            // The request first: closing ends the reader, whose own request (`normal`, when
            // its input ends) must not win the race to be the first.
            session?.requestClose(.tooSlow)
            close()
            return
        }
        writeOrQueue(frame, context: context)
    }

    /// Queues `frames` whatever the limit (a catch-up page, smaller than the limit), and
    /// returns once the backlog is at most half the limit, so a catch-up paces itself by the
    /// client's reading instead of overflowing.
    func enqueuePaced(_ frames: [WireFrame]) -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        guard !closed, let context else { return eventLoop.makeSucceededVoidFuture() }
        for frame in frames { writeOrQueue(frame, context: context) }
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

    /// The keep-alive's tick: false when the client sent nothing since the previous ping (it
    /// missed a pong for a whole interval: the caller drops it); else pings it again.
    func keepAlive() -> Bool {
        eventLoop.preconditionInEventLoop()
        guard !closed, let context else { return true }
        if let lastPing, lastRead < lastPing { return false }
        lastPing = .now()
        // A ping waits behind the backlog, like any frame: a client that does not read
        // does not answer either.
        enqueue(.ping)
        context.flush()
        return true
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
            backlogBytes -= frame.byteCount
            write(frame, context: context)
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

    /// Writes `frame` when nothing waits before it and NIO takes more; else queues it.
    private func writeOrQueue(_ frame: WireFrame, context: ChannelHandlerContext) {
        if backlog.isEmpty && context.channel.isWritable {
            write(frame, context: context)
        } else {
            backlog.append(frame)
            backlogBytes += frame.byteCount
        }
    }

    private func write(_ frame: WireFrame, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(frame.header), promise: nil)
        context.write(wrapOutboundOut(frame.payload), promise: nil)
    }
}

/// Frames for many sockets, handed to each event loop in one hop: `add` them in the order
/// each socket must receive them, then `submit()`. Sockets of one event loop get their frames
/// in `add` order; one flush per socket follows. Closes requested with `close` come after
/// every frame of the batch.
struct OutboundBatch {
    private var byLoop: [ObjectIdentifier: (loop: any EventLoop, items: [(SocketOutbox, WireFrame)])] = [:]
    private var closes: [(SocketSession, SocketSession.CloseRequest)] = []

    /// Asks `session` to close once the batch's frames are on their way (a removed user's
    /// socket still gets the frames of the changes before the removal).
    mutating func close(_ session: SocketSession, with request: SocketSession.CloseRequest) {
        closes.append((session, request))
    }

    var isEmpty: Bool { byLoop.isEmpty && closes.isEmpty }

    mutating func add(_ frame: WireFrame, to outbox: SocketOutbox) {
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
        defer { for (session, request) in closes { session.requestClose(request) } }
        for (loop, items) in byLoop.values {
            loop.execute {
                var flushed = Set<ObjectIdentifier>()
                for (outbox, frame) in items { outbox.enqueue(frame) }
                for (outbox, _) in items where flushed.insert(ObjectIdentifier(outbox)).inserted { outbox.flush() }
            }
        }
    }
}
