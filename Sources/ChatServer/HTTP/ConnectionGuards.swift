import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Guards a connection until its first request head has been read.
///
/// NIO's upgradable HTTP/1 pipeline (`ChatServerChannel`) leaves that stretch unguarded: its idle timeout is installed only once the first head was parsed (a
/// client that never finishes one holds its socket forever), and with NIO's error handling
/// turned off a head NIO cannot parse (`Content-Length: -1`, both `Content-Length` and
/// `Transfer-Encoding`, raw UTF-8 in the request target) gets neither an answer nor a close.
/// This handler sits behind the HTTP codec: it closes a connection whose first head has not
/// arrived within `timeout`, answers a parse error with 400 and closes, and removes itself
/// when the head arrives (from then on Hummingbird's own idle timeout and 400 apply).
final class FirstRequestGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?
    private var answered = false

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            Self.hangUp(loopBound.value)
        }
    }

    /// Closes the connection. Told first that the input is over, the upgrade handler behind
    /// ends its negotiation as "input closed" (which `ChatServerChannel` logs at trace
    /// level) rather than as an error.
    private static func hangUp(_ context: ChannelHandlerContext) {
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        if case .head = unwrapInboundIn(data) {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !answered else { return }
        answered = true
        deadline?.cancel()
        let body = ByteBuffer(string: #"{"detail":"Malformed HTTP request"}"#)
        let head = HTTPResponseHead(
            version: .http1_1, status: .badRequest,
            headers: [
                "Content-Type": "application/json; charset=utf-8", "Content-Length": "\(body.readableBytes)",
                "Connection": "close",
            ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            Self.hangUp(loopBound.value)
        }
    }
}

/// Closes a connection whose request body stops arriving: no body bytes for `timeout` while
/// a request is being read (Hummingbird's idle timeout covers only the time between
/// requests). A timeout between reads, not for the whole body, so a large upload over a slow
/// link is fine as long as it keeps moving.
final class BodyReadTimeout: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadline?.cancel()
        deadline = nil
        switch unwrapInboundIn(data) {
        case .head, .body:
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: timeout) { loopBound.value.close(promise: nil) }
        case .end:
            break
        }
        context.fireChannelRead(data)
    }
}
