import ChatCore
import NIOCore
import NIOWebSocket

/// A message a client sent on its socket, its fragments joined.
enum ClientMessage: Sendable {
    case text(String)
    case binary
}

/// What a socket's connection asks the controller to do, one at a time and in this order:
/// `start` once, then each client message, then `finish` once.
enum SocketWork: Sendable {
    /// The socket is open: record presence, and return once its subscription is live.
    case start
    case message(ClientMessage)
    /// The socket is closing (`request` says why): leave the rooms and presence.
    case finish(SocketSession.CloseRequest)
}

/// One upgraded WebSocket, served by a channel handler instead of a task.
///
/// An idle socket thus holds no task and no task stack: the connection task ends with the
/// upgrade, and this handler (behind NIO's frame decoder and encoder) speaks the protocol
/// on the channel's event loop: it joins fragments (a message over 1 MiB closes the socket
/// with 1009), answers pings, runs the close handshake, and hands what needs the database to
/// the controller as `SocketWork`. That work runs in `ConnectionTasks`, one item at a time
/// per socket, in a task that exists only while there is work: a client that sends a message
/// costs one short task, not one for its socket's lifetime. Reading stops while a socket has
/// `maxPendingWork` items waiting (what one read already brought in is still queued).
///
/// Closing. A close asked for elsewhere (`SocketSession.requestClose`: removal, 4408, 4401,
/// shutdown, ping timeout) writes the close frame at once, ahead of anything unsent (the
/// outbox dropped it), then waits for the client's close frame to hang up, up to
/// `closeTimeout` (`slowClientGrace` for a client too slow to read, whose output is shut
/// after the frame). A client's close frame is answered with its code and the connection
/// closed. A refused socket gets its close frame the same way, and nothing else.
///
/// Every member is touched on the channel's event loop only.
final class WebSocketConnection: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// The largest message a client may send (its frames joined).
    static let maxMessageBytes = 1 << 20
    /// How long a client has to answer the server's close frame.
    static let closeTimeout = TimeAmount.seconds(10)
    /// How long a client that fell behind has to read its close frame before the connection is cut.
    static let slowClientGrace = TimeAmount.seconds(30)
    static let maxPendingWork = 8

    private enum Phase {
        case open
        /// Our close frame is written; waiting for the client's, or for `deadline`.
        case closing(deadline: Scheduled<Void>?)
        case closed
    }

    /// What admission decided; read once, when the handler is added.
    private var admission: Admission?
    private let controller: WebSocketController
    private var context: ChannelHandlerContext?
    private var socket: WebSocketController.AdmittedSocket?
    private var phase = Phase.open
    private var isOpen: Bool {
        if case .open = phase { return true }
        return false
    }
    /// A message's frames so far (the first had no FIN).
    private var fragments: ByteBuffer?
    private var fragmentsAreText = false
    /// Work waiting for the controller, and whether a task is taking it.
    private var pending = CircularBuffer<SocketWork>()
    private var working = false
    /// A read NIO asked for while too much work waited.
    private var readHeld = false

    init(admission: Admission, controller: WebSocketController) {
        self.admission = admission
        self.controller = controller
    }

    // MARK: Opening

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard let admission else { return }
        self.admission = nil
        switch admission {
        case .rejected(let code, let reason):
            close(with: .init(code: code, reason: reason))
        case .admitted(let user, let kind, let catchUp, let tokenExpiresAt):
            do {
                let socket = try controller.open(
                    user: user, kind: kind, catchUp: catchUp, tokenExpiresAt: tokenExpiresAt, connection: self,
                    channel: context.channel)
                self.socket = socket
                add(.start)
                controller.opened(socket, channel: context.channel)  // may ask it to close at once (4429, shutdown)
            } catch {
                close(with: .init(code: 1011, reason: "Server error, try again later"))
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if case .closing(let deadline) = phase { deadline?.cancel() }
        phase = .closed
        self.context = nil
    }

    // MARK: Client frames

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let wellFormed = frame.maskKey != nil && !frame.rsv1 && !frame.rsv2 && !frame.rsv3
        if frame.opcode == .connectionClose, wellFormed || !isOpen {
            return receivedClose(frame, context: context)
        }
        guard isOpen else { return }  // closing: only the client's close matters
        guard wellFormed else { return closeMalformed() }
        switch frame.opcode {
        case .ping:
            // Not while NIO's buffer is full: a client that pings without reading would pile
            // up pongs (RFC 6455 5.5.3 lets an endpoint answer only some pings).
            guard context.channel.isWritable else { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            break  // the outbox noted that the client is there
        case .text, .binary:
            guard fragments == nil else {
                return closeMalformed()
            }
            fragmentsAreText = frame.opcode == .text
            received(frame.unmaskedData, fin: frame.fin)
        case .continuation:
            guard fragments != nil else {
                return closeMalformed()
            }
            received(frame.unmaskedData, fin: frame.fin)
        default:
            closeMalformed()
        }
    }

    private func received(_ data: ByteBuffer, fin: Bool) {
        var data = data
        if var joined = fragments {
            fragments = nil  // unique while appending
            joined.writeBuffer(&data)
            data = joined
        }
        guard data.readableBytes <= Self.maxMessageBytes else {
            fragments = nil
            return closeMalformed()
        }
        guard fin else {
            fragments = data
            return
        }
        guard let socket else { return }  // a refused socket, closing
        guard fragmentsAreText else { return add(.message(.binary)) }
        guard let text = String(validating: data.readableBytesView, as: UTF8.self) else {
            return socket.session.requestClose(.invalidText)
        }
        add(.message(.text(text)))
    }

    /// The client's close frame: the answer to ours, or its own close, answered with its code
    /// (the connection is then closed once the answer is written, or after `closeTimeout`).
    private func receivedClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        switch phase {
        case .closed:
            return
        case .closing(let deadline):
            deadline?.cancel()
            phase = .closed
            context.close(promise: nil)
        case .open:
            var reply = context.channel.allocator.buffer(capacity: 2)
            reply.write(webSocketErrorCode: Self.answer(toClose: frame.unmaskedData))
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            phase = .closing(deadline: context.eventLoop.scheduleTask(in: Self.closeTimeout) { loopBound.value.close(promise: nil) })
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)))
                .whenComplete { _ in loopBound.value.close(promise: nil) }
            socket?.session.requestClose(.normal)
        }
    }

    /// The code a client's close is answered with: its own (RFC 6455 7.4.1), 1000 when it
    /// gave none, 1002 when it gave one an endpoint may not send.
    static func answer(toClose payload: ByteBuffer) -> WebSocketErrorCode {
        var payload = payload
        guard payload.readableBytes > 0 else { return .normalClosure }
        guard let code = payload.readInteger(as: UInt16.self) else { return .protocolError }
        switch code {
        case 1000...1003, 1007...1011, 3000...4999: return .init(codeNumber: Int(code))
        default: return .protocolError
        }
    }

    /// A message over 1 MiB, or a frame that breaks the protocol (unmasked, reserved bits
    /// set, a continuation out of place, an unknown opcode): the socket closes with 1009, as
    /// the API documents for both.
    private func closeMalformed() {
        if let socket { socket.session.requestClose(.malformed) } else { close(with: .malformed) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .closing(let deadline) = phase { deadline?.cancel() }
        phase = .closed
        if let socket {
            socket.session.requestClose(.normal)
            controller.disconnected(socket)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO's frame decoder found a frame it cannot read (over 1 MiB, a fragmented or long
        // control frame): 1009, as for the violations found here. Anything else (a reset
        // connection) ends the connection.
        if error is NIOWebSocketError { closeMalformed() } else { context.close(promise: nil) }
    }

    /// The client half-closed its connection (FIN without a close frame): it cannot answer a
    /// close frame, so the connection is closed.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed? = event as? ChannelEvent {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Closing

    /// The session was asked to close (on this event loop): the controller finishes the
    /// socket, and the client is told why.
    func closeRequested(_ request: SocketSession.CloseRequest) {
        add(.finish(request))
        close(with: request)
    }

    private func close(with request: SocketSession.CloseRequest) {
        guard isOpen, let context else { return }
        var data = context.channel.allocator.buffer(capacity: 2 + request.reason.utf8.count)
        data.write(webSocketErrorCode: .init(codeNumber: request.code))
        data.writeString(request.reason)
        let written = context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        if request == .pingTimeout {
            // Presumed gone: the close frame is a courtesy, nobody waits for an answer.
            phase = .closed
            context.close(promise: nil)
            return
        }
        let wait = request == .tooSlow ? Self.slowClientGrace : Self.closeTimeout
        phase = .closing(deadline: context.eventLoop.scheduleTask(in: wait) { loopBound.value.close(promise: nil) })
        switch request {
        case .tooSlow:
            // The frame is the next thing the client reads; a FIN follows it.
            written.whenSuccess { loopBound.value.close(mode: .output, promise: nil) }
        case .malformed:
            // The decoder may not read the client's answer after a broken frame.
            written.whenComplete { _ in loopBound.value.close(promise: nil) }
        default:
            break
        }
    }

    // MARK: Work for the controller

    private func add(_ work: SocketWork) {
        pending.append(work)
        guard !working, let socket else { return }
        working = true
        let loopBound = NIOLoopBound(self, eventLoop: socket.session.outbox.eventLoop)
        let controller = self.controller
        let started = controller.tasks.start {
            while let work = try? await socket.session.outbox.eventLoop.submit({ loopBound.value.nextWork() }).get() {
                await controller.perform(work, for: socket)
            }
        }
        if !started {
            // The instance is stopping after its sockets closed: nothing left to do.
            pending.removeAll()
        }
    }

    /// The next work item, or nil (the task ends) when none waits.
    private func nextWork() -> SocketWork? {
        guard let work = pending.popFirst() else {
            working = false
            return nil
        }
        if readHeld, pending.count < Self.maxPendingWork, let context {
            readHeld = false
            context.read()
        }
        return work
    }

    func read(context: ChannelHandlerContext) {
        if pending.count >= Self.maxPendingWork {
            readHeld = true
        } else {
            context.read()
        }
    }
}
