import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A WebSocket client for tests and benchmarks. Received frames are buffered and read with
/// `next()`; server pings are answered automatically.
public final class WebSocketTestClient: Sendable {
    /// A received frame, or the end of the connection.
    public enum Event: Sendable, Equatable, CustomStringConvertible {
        case text(String)
        case binary([UInt8])
        /// A close frame (`code` nil if it had no payload), or the connection ending without one
        /// (`code: nil, reason: ""`).
        case close(code: Int?, reason: String)

        public var description: String {
            switch self {
            case .text(let text): "text(\(abbreviated(text)))"
            case .binary(let bytes): "binary(\(bytes.count) bytes)"
            case .close(let code, let reason): "close(code: \(code.map(String.init) ?? "nil"), reason: \"\(reason)\")"
            }
        }

        var isClose: Bool { if case .close = self { true } else { false } }
    }

    /// The server answered the upgrade request with a status other than 101.
    public struct UpgradeRejected: Error, CustomStringConvertible {
        public let status: Int
        /// The response body (at most 64 KiB).
        public let body: String
        public init(status: Int, body: String = "") {
            self.status = status
            self.body = body
        }
        public var description: String { "WebSocket upgrade rejected with status \(status): \(abbreviated(body))" }
    }

    /// The connection has ended and its final close event was already returned.
    public struct ConnectionClosed: Error, CustomStringConvertible {
        public let description: String
    }

    /// The next event was not what the caller expected.
    public struct UnexpectedEvent: Error, CustomStringConvertible {
        public let expected: String
        public let event: Event
        public var description: String { "expected \(expected), got \(event)" }
    }

    public typealias Timeout = TestKitTimeout

    let channel: any Channel
    let shared: SharedState

    private init(channel: any Channel, shared: SharedState) {
        self.channel = channel
        self.shared = shared
    }

    deinit {
        channel.close(promise: nil)
    }

    // MARK: Connecting

    /// Connects and performs the WebSocket upgrade. `path` includes the query string.
    /// - Parameters:
    ///   - receiveBufferSize: if set, SO_RCVBUF is set to this before connecting (for slow-reader tests).
    ///   - maxFrameSize: the largest frame (and aggregated message) accepted from the server.
    /// - Throws: `UpgradeRejected` for a non-101 answer, `TestKitTimeout` after `timeout`.
    public static func connect(
        host: String = "127.0.0.1",
        port: Int,
        path: String,
        headers: [(String, String)] = [],
        receiveBufferSize: Int? = nil,
        maxFrameSize: Int = 1 << 24,
        timeout: Duration = .seconds(10),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> WebSocketTestClient {
        let shared = SharedState()
        var bootstrap = ClientBootstrap(group: eventLoopGroup).connectTimeout(timeout.timeAmount)
        if let receiveBufferSize {
            bootstrap = bootstrap.channelOption(
                ChannelOptions.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferSize))
        }
        var head = "GET \(path) HTTP/1.1\r\n"
        if !headers.contains(where: { $0.0.lowercased() == "host" }) { head += "Host: \(host):\(port)\r\n" }
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        head += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        let request = head + "\r\n"
        let outcome = NIOLockedValueBox<EventLoopFuture<HandshakeHandler.Outcome>?>(nil)

        // The handshake is done by hand rather than with NIO's client upgrader: a close
        // frame sent right behind the 101 response was occasionally lost in the upgrader's
        // hand-over (about 1 in 150 connections). Here the bytes after the response go
        // straight into the frame decoder, in the same event-loop turn.
        let channel = try await bootstrap.connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let promise = channel.eventLoop.makePromise(of: HandshakeHandler.Outcome.self)
                outcome.withLockedValue { $0 = promise.futureResult }
                try channel.pipeline.syncOperations.addHandler(
                    HandshakeHandler(request: request, shared: shared, maxFrameSize: maxFrameSize, promise: promise))
                return channel
            }
        }
        do {
            guard let future = outcome.withLockedValue({ $0 }) else { preconditionFailure("initializer did not run") }
            switch try await future.get(timeout: timeout, "the WebSocket upgrade response for \(path)") {
            case .upgraded:
                return WebSocketTestClient(channel: channel, shared: shared)
            case .rejected(let rejection):
                channel.close(promise: nil)
                throw rejection
            }
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    // MARK: Receiving

    /// The next event. After the close event has been returned, further calls throw `ConnectionClosed`.
    public func next(timeout: Duration = .seconds(10)) async throws -> Event {
        try await nextEvent(deadline: .now() + timeout.timeAmount, timeout: timeout, what: "a frame")
    }

    /// The next event, which must be a text frame holding a JSON object.
    public func nextObject(timeout: Duration = .seconds(10)) async throws -> JSONObject {
        let event = try await next(timeout: timeout)
        guard case .text(let text) = event, let object = try? JSONObject(parsing: text) else {
            throw UnexpectedEvent(expected: "a text frame holding a JSON object", event: event)
        }
        return object
    }

    /// The first JSON object whose "type" is `type`; other frames are skipped (see `takeSkipped()`).
    /// Throws `UnexpectedEvent` if the connection closes first.
    public func next(type: String, timeout: Duration = .seconds(10)) async throws -> JSONObject {
        let deadline = NIODeadline.now() + timeout.timeAmount
        while true {
            let event = try await nextEvent(deadline: deadline, timeout: timeout, what: "a frame of type \"\(type)\"")
            if case .text(let text) = event, let object = try? JSONObject(parsing: text) {
                if object.type == type { return object }
            } else if event.isClose {
                throw UnexpectedEvent(expected: "a frame of type \"\(type)\"", event: event)
            }
            shared.recordSkipped(event)
        }
    }

    /// Returns and clears the frames skipped by `next(type:)` (the most recent 1,000 are kept).
    public func takeSkipped() -> [Event] {
        shared.state.withLockedValue { state in
            defer { state.skipped.removeAll() }
            return state.skipped
        }
    }

    /// Throws `UnexpectedEvent` if any event (frame or close) arrives within `duration`.
    public func expectSilence(for duration: Duration) async throws {
        let event: Event
        do {
            event = try await nextEvent(deadline: .now() + duration.timeAmount, timeout: duration, what: "silence")
        } catch is TestKitTimeout {
            return
        }
        throw UnexpectedEvent(expected: "no frame for \(duration)", event: event)
    }

    /// Number of received events not yet returned by `next`.
    public var bufferedEventCount: Int { shared.state.withLockedValue { $0.buffer.count } }

    /// True once the TCP connection has closed.
    public var isClosed: Bool { shared.state.withLockedValue { $0.channelClosed } }

    private func nextEvent(deadline: NIODeadline, timeout: Duration, what: String) async throws -> Event {
        let id = shared.nextWaiterID()
        let eventLoop = channel.eventLoop
        let shared = self.shared
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Event, any Error>) in
                let immediate = shared.state.withLockedValue { state -> Result<Event, any Error>? in
                    if let event = state.buffer.popFirst() {
                        if event.isClose { state.endDelivered = true }
                        return .success(event)
                    }
                    if state.endDelivered {
                        return .failure(ConnectionClosed(description: "connection closed while waiting for \(what)"))
                    }
                    if state.waiter != nil {
                        return .failure(UsageError("concurrent next() calls on one WebSocketTestClient"))
                    }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    let timer = eventLoop.scheduleTask(deadline: deadline) {
                        shared.failWaiter(id: id, TestKitTimeout("timed out after \(timeout) waiting for \(what)"))
                    }
                    state.waiter = Waiter(id: id, continuation: continuation, timer: timer)
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            shared.failWaiter(id: id, CancellationError())
        }
    }

    // MARK: Sending

    /// Sends a text frame.
    public func send(text: String) async throws {
        try await send(frame: .text, payload: Array(text.utf8))
    }

    /// Sends `object` encoded as JSON in a text frame.
    public func send(object: some Encodable) async throws {
        let data = try JSONEncoder().encode(object)
        try await send(frame: .text, payload: Array(data))
    }

    /// Sends a binary frame.
    public func send(binary: [UInt8]) async throws {
        try await send(frame: .binary, payload: binary)
    }

    /// Sends one raw (masked) frame, e.g. a continuation or an oversized frame.
    public func send(frame opcode: WebSocketOpcode, payload: [UInt8], fin: Bool = true) async throws {
        if opcode == .connectionClose { shared.state.withLockedValue { $0.closeSent = true } }
        let frame = WebSocketFrame(
            fin: fin, opcode: opcode, maskKey: .random(), data: channel.allocator.buffer(bytes: payload))
        try await channel.writeAndFlush(frame)
    }

    /// Sends a close frame and waits (up to 5 s, then closes the socket) for the connection to end.
    /// Received events stay readable with `next()`.
    public func close(code: Int = 1000, reason: String = "") async throws {
        let alreadySent = shared.state.withLockedValue { state in
            defer { state.closeSent = true }
            return state.closeSent || state.channelClosed
        }
        if !alreadySent {
            var payload = channel.allocator.buffer(capacity: 2 + reason.utf8.count)
            payload.writeInteger(UInt16(truncatingIfNeeded: code))
            payload.writeString(reason)
            let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: payload)
            try? await channel.writeAndFlush(frame)
        }
        let channel = self.channel
        let timer = channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        try? await channel.closeFuture.get()
        timer.cancel()
    }

    /// Closes the TCP connection without a close frame.
    public func abort() {
        channel.close(promise: nil)
    }

    /// Half-closes the TCP connection (a FIN) without a close frame, still reading.
    public func shutdownOutput() async throws {
        try await channel.close(mode: .output)
    }

    // MARK: Flow control

    /// Stops reading from the socket, so the kernel buffers fill and the server sees backpressure.
    public func pauseReading() async {
        try? await channel.setOption(ChannelOptions.autoRead, value: false).get()
    }

    /// Resumes reading from the socket.
    public func resumeReading() async {
        try? await channel.setOption(ChannelOptions.autoRead, value: true).get()
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Internals

struct Waiter: Sendable {
    let id: UInt64
    let continuation: CheckedContinuation<WebSocketTestClient.Event, any Error>
    let timer: Scheduled<Void>
}

/// State shared between the client object and its channel handler.
final class SharedState: Sendable {
    struct State: Sendable {
        var buffer = CircularBuffer<WebSocketTestClient.Event>(initialCapacity: 4)
        var waiter: Waiter?
        var waiterCounter: UInt64 = 0
        /// A close event has been queued (no more events will follow).
        var endQueued = false
        /// The close event has been returned to the caller.
        var endDelivered = false
        var closeSent = false
        var channelClosed = false
        var skipped: [WebSocketTestClient.Event] = []
    }

    let state = NIOLockedValueBox(State())

    func nextWaiterID() -> UInt64 {
        state.withLockedValue { state in
            state.waiterCounter += 1
            return state.waiterCounter
        }
    }

    func deliver(_ event: WebSocketTestClient.Event) {
        let waiter = state.withLockedValue { state -> Waiter? in
            guard !state.endQueued else { return nil }
            if event.isClose { state.endQueued = true }
            if let waiter = state.waiter {
                state.waiter = nil
                if event.isClose { state.endDelivered = true }
                return waiter
            }
            state.buffer.append(event)
            return nil
        }
        if let waiter {
            waiter.timer.cancel()
            waiter.continuation.resume(returning: event)
        }
    }

    func failWaiter(id: UInt64, _ error: any Error) {
        let waiter = state.withLockedValue { state -> Waiter? in
            guard let waiter = state.waiter, waiter.id == id else { return nil }
            state.waiter = nil
            return waiter
        }
        if let waiter {
            waiter.timer.cancel()
            waiter.continuation.resume(throwing: error)
        }
    }

    func recordSkipped(_ event: WebSocketTestClient.Event) {
        state.withLockedValue { state in
            if state.skipped.count >= 1000 { state.skipped.removeFirst(state.skipped.count - 999) }
            state.skipped.append(event)
        }
    }
}

/// Turns frames into events, answers pings and close frames.
final class FrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let shared: SharedState

    init(shared: SharedState) {
        self.shared = shared
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            shared.deliver(.text(String(buffer: frame.unmaskedData)))
        case .binary:
            shared.deliver(.binary(Array(buffer: frame.unmaskedData)))
        case .ping:
            let closing = shared.state.withLockedValue { $0.closeSent }
            if !closing {
                let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
                context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
            }
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self).map(Int.init)
            let reason = data.readString(length: data.readableBytes) ?? ""
            shared.deliver(.close(code: code, reason: reason))
            let alreadySent = shared.state.withLockedValue { state in
                defer { state.closeSent = true }
                return state.closeSent
            }
            if !alreadySent {
                // Echo the status code, then let the server close the TCP connection.
                var payload = context.channel.allocator.buffer(capacity: 2)
                if let code { payload.writeInteger(UInt16(code)) }
                let reply = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: payload)
                context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
            }
            let channel = context.channel
            context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        shared.state.withLockedValue { $0.channelClosed = true }
        shared.deliver(.close(code: nil, reason: ""))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Sends the upgrade request, reads the response head by hand and, on 101, installs the
/// WebSocket codec behind itself and passes it the bytes that followed the head.
final class HandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Outcome: Sendable {
        case upgraded
        case rejected(WebSocketTestClient.UpgradeRejected)
    }

    let request: String
    let shared: SharedState
    let maxFrameSize: Int
    let promise: EventLoopPromise<Outcome>
    private var received: ByteBuffer?
    private var rejected: (status: Int, bodyStart: Int, length: Int?)?
    private var done = false

    init(request: String, shared: SharedState, maxFrameSize: Int, promise: EventLoopPromise<Outcome>) {
        self.request = request
        self.shared = shared
        self.maxFrameSize = maxFrameSize
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if received == nil { received = incoming } else { received!.writeBuffer(&incoming) }
        guard !done, var buffer = received else { return }
        if let rejected {
            let available = buffer.readableBytes - rejected.bodyStart
            if let length = rejected.length, available >= length { finishRejection(buffer) }
            return
        }
        let bytes = buffer.readableBytesView
        guard let end = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
        let headLength = end.upperBound - bytes.startIndex
        let head = buffer.readString(length: headLength) ?? ""
        let lines = head.split(separator: "\r\n")
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        if status == 101 {
            done = true
            do {
                let decoder = ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize))
                try context.pipeline.syncOperations.addHandlers(
                    [
                        WebSocketFrameEncoder(), decoder,
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 20,
                            maxAccumulatedFrameSize: maxFrameSize),
                        FrameHandler(shared: shared),
                    ], position: .after(self))
            } catch {
                promise.fail(error)
                context.close(promise: nil)
                return
            }
            promise.succeed(.upgraded)
            if buffer.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(buffer)) }
            received = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } else {
            let length = lines.dropFirst().first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
            rejected = (status, headLength, length)
            if let length, buffer.readableBytes >= length { finishRejection(received!) }
        }
    }

    private func finishRejection(_ buffer: ByteBuffer) {
        guard !done, let rejected else { return }
        done = true
        var body = buffer
        body.moveReaderIndex(forwardBy: min(rejected.bodyStart, body.readableBytes))
        let text = body.readString(length: min(body.readableBytes, rejected.length ?? body.readableBytes)) ?? ""
        promise.succeed(.rejected(.init(status: rejected.status, body: text)))
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let received, rejected != nil { finishRejection(received) }
        if !done {
            done = true
            promise.fail(ChannelError.inputClosed)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            promise.fail(error)
        }
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // A failed connect tears the pipeline down without channelInactive; an unfulfilled
        // promise would trap in debug builds ("leaking promise").
        if !done {
            done = true
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }
}
