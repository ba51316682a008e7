import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A complete HTTP response.
public struct HTTPTestResponse: Sendable, CustomStringConvertible {
    public let status: Int
    public let headers: [(String, String)]
    public let body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The body decoded as UTF-8.
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The body parsed as a JSON object.
    public func object() throws -> JSONObject { try JSONObject(parsing: text) }

    /// The body parsed as any JSON value.
    public func json() throws -> JSONValue { try JSONValue(parsing: text) }

    /// The body decoded as `T`.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(body))
    }

    /// The first header with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }

    public var description: String { "HTTP \(status): \(abbreviated(text))" }
}

/// An HTTP/1.1 client over one keep-alive connection (reopened when the server closed it).
/// Requests on one client are serialized; use several clients for concurrency.
public final class HTTPTestClient: Sendable {
    /// The connection ended before a complete response arrived.
    public struct ConnectionClosed: Error, CustomStringConvertible {
        let receivedHead: Bool
        public var description: String {
            receivedHead ? "connection closed in the middle of the response" : "connection closed before a response"
        }
    }

    public let host: String
    public let port: Int
    let group: any EventLoopGroup
    let requestTimeout: Duration
    private let lock = AsyncSerialLock()
    private let connection = NIOLockedValueBox<(any Channel)?>(nil)

    public init(
        host: String = "127.0.0.1",
        port: Int,
        requestTimeout: Duration = .seconds(30),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        self.port = port
        self.requestTimeout = requestTimeout
        self.group = eventLoopGroup
    }

    deinit {
        connection.withLockedValue { $0?.close(promise: nil) }
    }

    /// Sends a request and returns the complete response.
    public func request(
        _ method: String,
        _ path: String,
        headers: [(String, String)] = [],
        body: [UInt8]? = nil
    ) async throws -> HTTPTestResponse {
        var httpHeaders = HTTPHeaders()
        if !headers.contains(where: { $0.0.lowercased() == "host" }) {
            httpHeaders.add(name: "Host", value: "\(host):\(port)")
        }
        for (name, value) in headers { httpHeaders.add(name: name, value: value) }
        if let body, !httpHeaders.contains(name: "content-length"), !httpHeaders.contains(name: "transfer-encoding") {
            httpHeaders.add(name: "Content-Length", value: String(body.count))
        }
        let head = HTTPRequestHead(
            version: .http1_1, method: HTTPMethod(rawValue: method.uppercased()), uri: path, headers: httpHeaders)

        await lock.acquire()
        defer { lock.release() }
        var attempt = 0
        while true {
            attempt += 1
            let (channel, reused) = try await currentChannel()
            let promise = channel.eventLoop.makePromise(of: HTTPTestResponse.self)
            let request = PendingRequest(
                head: head, body: body.map { channel.allocator.buffer(bytes: $0) }, promise: promise)
            channel.writeAndFlush(request, promise: nil)
            do {
                return try await promise.futureResult.get(timeout: requestTimeout, "the response to \(method) \(path)")
            } catch let error as ConnectionClosed where reused && !error.receivedHead && attempt == 1 {
                // The server closed the idle keep-alive connection; retry once on a new one.
                continue
            } catch let error as ChannelError where reused && attempt == 1 && error.isClosedChannel {
                continue
            } catch let error as TestKitTimeout {
                channel.close(promise: nil)
                throw error
            }
        }
    }

    /// Sends a request with an optional bearer token and no body.
    public func request(_ method: String, _ path: String, token: String?) async throws -> HTTPTestResponse {
        try await request(method, path, headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [])
    }

    /// Sends `json` as a JSON body with an optional bearer token.
    public func request(
        _ method: String, _ path: String, token: String?, json: some Encodable
    ) async throws -> HTTPTestResponse {
        var headers = [("Content-Type", "application/json")]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        return try await request(method, path, headers: headers, body: Array(try JSONEncoder().encode(json)))
    }

    /// Closes the connection (a later request opens a new one).
    public func close() async {
        await lock.acquire()
        defer { lock.release() }
        let channel = connection.withLockedValue { channel in
            defer { channel = nil }
            return channel
        }
        try? await channel?.close()
    }

    private func currentChannel() async throws -> (any Channel, reused: Bool) {
        if let channel = connection.withLockedValue({ $0 }), channel.isActive {
            return (channel, true)
        }
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(requestTimeout.timeAmount)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(HTTPClientHandler())
                }
            }
            .connect(host: host, port: port)
            .get()
        connection.withLockedValue { $0 = channel }
        return (channel, false)
    }
}

extension ChannelError {
    var isClosedChannel: Bool {
        switch self {
        case .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed, .eof: true
        default: false
        }
    }
}

struct PendingRequest: Sendable {
    let head: HTTPRequestHead
    let body: ByteBuffer?
    let promise: EventLoopPromise<HTTPTestResponse>
}

/// Writes one request at a time and completes its promise with the collected response.
final class HTTPClientHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = PendingRequest
    typealias OutboundOut = HTTPClientRequestPart

    private var pending: EventLoopPromise<HTTPTestResponse>?
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        guard context.channel.isActive else {
            request.promise.fail(HTTPTestClient.ConnectionClosed(receivedHead: false))
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if let previous = pending {
            previous.fail(UsageError("request issued while another was in flight"))
        }
        pending = request.promise
        head = nil
        body = []
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        if let buffer = request.body {
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in
            request.promise.fail(error)
        }
        written.futureResult.cascade(to: promise)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let responseHead):
            head = responseHead
        case .body(let buffer):
            body += buffer.readableBytesView
        case .end:
            guard let responseHead = head, let promise = pending else { return }
            pending = nil
            head = nil
            let response = HTTPTestResponse(
                status: Int(responseHead.status.code),
                headers: responseHead.headers.map { ($0.name, $0.value) },
                body: body)
            body = []
            if !responseHead.isKeepAlive { context.close(promise: nil) }
            promise.succeed(response)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failPending(HTTPTestClient.ConnectionClosed(receivedHead: head != nil))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failPending(error)
        context.close(promise: nil)
    }

    private func failPending(_ error: any Error) {
        if let promise = pending {
            pending = nil
            promise.fail(error)
        }
    }
}
