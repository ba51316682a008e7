import Foundation
import Hummingbird
import HummingbirdTesting
import JWTKit
import Logging
import Testing
import ChatCore
import NIOConcurrencyHelpers

@testable import ChatServer

/// Builds the real application against the test database (`DATABASE_URL`, started by
/// `scripts/test.sh`) and runs `body` with a client that calls its router.
func withApp<R: Sendable>(
    configure: (inout AppConfiguration) -> Void = { _ in },
    events: any ChatEventSink = DiscardingEventSink(),
    routes: RouteRegistry = RouteRegistry(),
    _ body: @Sendable @escaping (TestAPI) async throws -> R
) async throws -> R {
    guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
        throw TestSetupError(
            description: "DATABASE_URL is not set: run the suite with scripts/test.sh, which starts a PostgreSQL for it")
    }
    var configuration = AppConfiguration(databaseURL: url, jwtSecret: TestAPI.secret)
    configuration.http.port = 0
    configuration.auth.bcryptCost = 4
    configuration.logging.level = .warning
    configuration.database.migrationsDirectory = TestAPI.sqlDirectory
    configuration.retention.interval = nil
    // Every in-process app shares this one test process with the whole parallel suite: on a
    // starved machine a transaction's next round trip can wait seconds for a thread, and the
    // production 5 s idle-in-transaction limit ended room creations mid-transaction (seen in
    // CI). The limit itself is exercised by the real-process tests.
    configuration.database.idleInTransactionTimeout = .seconds(60)
    configure(&configuration)
    var logger = Logger(label: "chat-tests")
    logger.logLevel = .warning
    let app = try await buildApplication(configuration: configuration, logger: logger, events: events, routes: routes)
    return try await app.test(.router) { client in
        try await body(TestAPI(client: client))
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
}

/// A test user: an id nobody else uses and a token for it.
struct TestUser: Sendable {
    var id: Int64
    var name: String
    var token: String
}

/// A parsed JSON response.
struct JSONResponse: @unchecked Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var raw: String
    var json: Any?

    var object: [String: Any] { json as? [String: Any] ?? [:] }
    var array: [[String: Any]] { json as? [[String: Any]] ?? [] }
    var detail: String? { object["detail"] as? String }
    subscript(key: String) -> Any? { object[key] }
    func int(_ key: String) -> Int64? { (object[key] as? NSNumber)?.int64Value }
    func list(_ key: String) -> [[String: Any]] { object[key] as? [[String: Any]] ?? [] }
}

struct TestAPI: Sendable {
    static let secret = "test-secret-for-chat-server-tests-long-enough-for-hs256-and-hs512!"
    static let sqlDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("sql").path

    let client: any TestClientProtocol

    @discardableResult
    func request(
        _ method: HTTPRequest.Method, _ path: String, token: String? = nil, json: Any? = nil, rawBody: String? = nil,
        rawBytes: [UInt8]? = nil, headers extraHeaders: HTTPFields = [:]
    ) async throws -> JSONResponse {
        var headers = extraHeaders
        if let token { headers[.authorization] = "Bearer \(token)" }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json, options: [.fragmentsAllowed]))
        } else if let rawBody {
            body = ByteBuffer(string: rawBody)
        } else if let rawBytes {
            body = ByteBuffer(bytes: rawBytes)
        }
        let response = try await client.execute(uri: path, method: method, headers: headers, body: body)
        let text = String(buffer: response.body)
        let parsed = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        OpenAPIConformance.shared.check(method: method, uri: path, status: response.status.code, contentType: response.headers[.contentType], json: parsed)
        return JSONResponse(status: response.status, headers: response.headers, raw: text, json: parsed)
    }

    /// A user known to the server (created by its first authenticated request).
    func makeUser(_ name: String? = nil) async throws -> TestUser {
        let id = Int64.random(in: 1_000_000_000...4_000_000_000_000)
        let name = name ?? "user-\(id)"
        let token = try await Self.token(sub: String(id), name: name)
        let me = try await request(.get, "/auth/me", token: token)
        #expect(me.status == .ok, "\(me.raw)")
        return TestUser(id: id, name: name, token: token)
    }

    /// Sends a multipart/form-data body built from text fields and one optional file part.
    func upload(
        _ user: TestUser, _ roomID: Int64, fields: [(String, String)], file: (name: String, type: String, bytes: [UInt8])?,
        truncated: Bool = false
    ) async throws -> JSONResponse {
        let boundary = "----chat-test-\(UInt64.random(in: 0...UInt64.max))"
        var body: [UInt8] = []
        for (name, value) in fields {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
        }
        if let file {
            body += Array(
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(file.name)\"\r\nContent-Type: \(file.type)\r\n\r\n".utf8)
            body += file.bytes + Array("\r\n".utf8)
        }
        if truncated {
            body.removeLast(2)  // the body ends inside the file part: no closing boundary
        } else {
            body += Array("--\(boundary)--\r\n".utf8)
        }
        var headers: HTTPFields = [.contentType: "multipart/form-data; boundary=\(boundary)"]
        headers[.authorization] = "Bearer \(user.token)"
        let response = try await client.execute(
            uri: "/chat/rooms/\(roomID)/messages/", method: .post, headers: headers, body: ByteBuffer(bytes: body))
        let text = String(buffer: response.body)
        let parsed = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        OpenAPIConformance.shared.check(method: .post, uri: "/chat/rooms/\(roomID)/messages/", status: response.status.code, contentType: response.headers[.contentType], json: parsed)
        return JSONResponse(status: response.status, headers: response.headers, raw: text, json: parsed)
    }

    /// A GET returning raw bytes (for served files).
    func raw(_ path: String, headers: HTTPFields = [:]) async throws -> (status: HTTPResponse.Status, headers: HTTPFields, body: [UInt8]) {
        let response = try await client.execute(uri: path, method: .get, headers: headers, body: nil)
        return (response.status, response.headers, Array(response.body.readableBytesView))
    }

    static func token(sub: String, name: String?, expiresIn: TimeInterval = 3600) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return try await keys.sign(
            AccessTokenClaims(
                sub: sub, name: name, exp: ExpirationClaim(value: Date().addingTimeInterval(expiresIn)),
                iat: IssuedAtClaim(value: Date())))
    }

    func makeGroup(_ owner: TestUser, with others: [TestUser], name: String = "group") async throws -> Int64 {
        let response = try await request(
            .post, "/chat/rooms/", token: owner.token,
            json: ["room_name": name, "room_type": "group", "participant_ids": others.map(\.id)])
        #expect(response.status == .created, "\(response.raw)")
        return try #require(response.int("room_id"))
    }

    func makeDirect(_ owner: TestUser, _ other: TestUser) async throws -> Int64 {
        let response = try await request(
            .post, "/chat/rooms/", token: owner.token, json: ["room_type": "direct", "participant_ids": [other.id]])
        #expect(response.status == .created || response.status == .ok, "\(response.raw)")
        return try #require(response.int("room_id"))
    }

    @discardableResult
    func send(_ user: TestUser, _ roomID: Int64, _ content: String, extra: [String: Any] = [:]) async throws -> JSONResponse {
        var body: [String: Any] = ["message_content": content, "message_type": "text"]
        body.merge(extra) { $1 }
        return try await request(.post, "/chat/rooms/\(roomID)/messages/", token: user.token, json: body)
    }
}

/// Asserts a UTC ISO 8601 timestamp with a `Z` suffix.
func expectTimestamp(_ value: Any?, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let text = value as? String else {
        Issue.record("expected a timestamp string, got \(String(describing: value))", sourceLocation: sourceLocation)
        return
    }
    let pattern = #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"#
    #expect(text.range(of: pattern, options: .regularExpression) != nil, "\(text)", sourceLocation: sourceLocation)
}

func expectKeys(_ object: [String: Any], _ keys: Set<String>, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(Set(object.keys) == keys, sourceLocation: sourceLocation)
}

/// Records published events, for tests of what the stores announce.
final class RecordingEventSink: ChatEventSink {
    private let box = NIOLockedValueBox<[ChatEvent]>([])
    var events: [ChatEvent] { box.withLockedValue { $0 } }
    func publish(_ event: ChatEvent) async { box.withLockedValue { $0.append(event) } }
}
