import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The server's connections: HTTP/1.1, or a WebSocket upgrade served by channel handlers.
///
/// A connection starts as HTTP/1.1 with NIO's upgrade handler in front. An upgrade request
/// is admitted or refused by `webSocketResponder` (the WebSocket routes, run in a short task
/// of `ConnectionTasks`, before the 101 is written); an upgraded connection is then served
/// by `WebSocketConnection`, and its connection task ends: an idle socket costs its channel
/// and handlers, not a suspended task (hummingbird-websocket keeps one per socket). Any
/// other request goes to Hummingbird's HTTP handling, with the first request head guarded
/// (`FirstRequestGuard`).
struct ChatServerChannel<WebSocketResponder: HTTPResponder>: ServerChildChannel, HTTPChannelHandler
where WebSocketResponder.Context == ChatWebSocketContext {
    enum Negotiated: Sendable {
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade request the WebSocket routes did not take (an unknown path): 400.
        case refusedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// Served by `WebSocketConnection` from now on.
        case webSocket
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let http1: HTTP1Channel.Configuration
    let firstRequestTimeout: TimeAmount
    let webSocketResponder: WebSocketResponder
    let webSockets: WebSocketController

    init(
        responder: @escaping HTTPChannelHandler.Responder, http1: HTTP1Channel.Configuration,
        firstRequestTimeout: TimeAmount, webSocketResponder: WebSocketResponder, webSockets: WebSocketController
    ) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.http1 = http1
        self.firstRequestTimeout = firstRequestTimeout
        self.webSocketResponder = webSocketResponder
        self.webSockets = webSockets
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // What the upgrade request's admission decided (nil: not asked, or no route took it).
            let admission = NIOLoopBoundBox<Admission?>(nil, eventLoop: channel.eventLoop)
            let upgradeAsked = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
                maxFrameSize: WebSocketConnection.maxMessageBytes,
                // WebSocketConnection answers a frame the decoder cannot read (1009).
                enableAutomaticErrorHandling: false,
                shouldUpgrade: { channel, head in
                    upgradeAsked.value = true
                    return admit(head, channel: channel, logger: logger).map { decided in
                        admission.value = decided
                        return decided == nil ? nil : HTTPHeaders()
                    }
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let decided = admission.value else { throw ChannelError.inappropriateOperationForState }
                        admission.value = nil
                        try channel.pipeline.syncOperations.addHandler(
                            WebSocketConnection(admission: decided, controller: webSockets))
                        return .webSocket
                    }
                })
            let http1 = self.http1
            let upgrades = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let operations = channel.pipeline.syncOperations
                        try operations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try operations.addHandlers(http1.additionalChannelHandlers())
                        try operations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: http1.idleTimeout.map { .nanoseconds($0.nanoseconds) }, logger: logger))
                        let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        // An upgrade request that no route took lands here too.
                        return upgradeAsked.value ? .refusedUpgrade(http) : .http(http)
                    }
                })
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Negotiated>(upgradeConfiguration: upgrades)
            configuration.enablePipelining = false  // NIOAsyncChannel reads one request at a time
            configuration.enableErrorHandling = false  // FirstRequestGuard, then Hummingbird, answer errors
            configuration.enableResponseHeaderValidation = false  // swift-http-types validated them
            configuration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            configuration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            configuration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let operations = channel.pipeline.syncOperations
            let negotiated = try operations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            try operations.addHandler(
                FirstRequestGuard(timeout: firstRequestTimeout),
                // [response encoder, request decoder, guard, upgrader]: the guard reads parsed
                // parts and its answer goes out through the encoder.
                position: .after(try operations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)))
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refusedUpgrade(let http):
                await refuseUpgrade(http)
            case .webSocket:
                break  // the channel's handlers serve it; this task is not needed
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("connection closed before its first request")
        } catch {
            logger.debug("connection failed before its first request", metadata: ["error.type": "\(error)"])
        }
    }

    /// Runs the WebSocket routes for an upgrade request: its admission, or nil when no route
    /// takes it.
    private func admit(_ head: HTTPRequestHead, channel: any Channel, logger: Logger) -> EventLoopFuture<Admission?> {
        let promise = channel.eventLoop.makePromise(of: Admission?.self)
        guard let request = try? HTTPRequest(head, secure: false, splitCookie: false) else {
            promise.succeed(nil)
            return promise.futureResult
        }
        let responder = webSocketResponder
        let started = webSockets.tasks.start {
            let context = ChatWebSocketContext(source: .init(channel: channel, logger: logger))
            let response = try? await responder.respond(to: Request(head: request, body: .init(buffer: .init())), context: context)
            promise.succeed(response?.status == .ok ? context.admission.admission : nil)
        }
        if !started { promise.succeed(nil) }  // shutting down
        return promise.futureResult
    }

    /// 400 with an empty body, then close.
    private func refuseUpgrade(_ http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>) async {
        try? await http.executeThenClose { _, outbound in
            let head = HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])
            try await outbound.write(contentsOf: [.head(head), .end(nil)])
        }
    }

    /// NIO's upgrade handler reads only a connection's first request: an upgrade asked for
    /// after a plain request on a kept-alive connection is sent to the same URI on a new
    /// connection (307, close).
    private static func redirectingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder)
        -> HTTPChannelHandler.Responder
    {
        return { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                return try await responder(request, writer, channel)
            }
            var location = request.uri.path
            if let query = request.uri.query { location += "?\(query)" }
            try await writer.writeResponse(
                HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw ClosingAfterRedirect()
        }
    }
}

/// Ends a connection after its 307 (`redirectingLateUpgrades`).
private struct ClosingAfterRedirect: Error {}

extension HTTPServerBuilder {
    /// HTTP/1.1 with WebSocket upgrades served by channel handlers (`ChatServerChannel`).
    static func chatServer<WebSocketRouter: HTTPResponderBuilder>(
        http1: HTTP1Channel.Configuration, firstRequestTimeout: TimeAmount, webSocketRouter: WebSocketRouter,
        webSockets: WebSocketController
    ) -> HTTPServerBuilder where WebSocketRouter.Responder.Context == ChatWebSocketContext {
        let webSocketResponder = webSocketRouter.buildResponder()
        return .init { responder in
            ChatServerChannel(
                responder: responder, http1: http1, firstRequestTimeout: firstRequestTimeout,
                webSocketResponder: webSocketResponder, webSockets: webSockets)
        }
    }
}
