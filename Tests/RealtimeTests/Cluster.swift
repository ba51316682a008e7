import ChatTestKit
import Foundation
import Postgres
import Testing

/// `chat-server` processes against the test database, started for one test and stopped after.
struct Cluster: Sendable {
    static let secret = "realtime-tests-secret-0123456789-0123456789-0123456789"

    let servers: [ServerProcess]
    let database: PostgresClient

    /// The `application_name` of a server's database sessions.
    func applicationName(_ server: ServerProcess) -> String {
        "chat-server \(server.environment["INSTANCE_ID"] ?? "")"
    }

    var a: ServerProcess { servers[0] }
    var b: ServerProcess { servers[1] }

    static var databaseURL: String {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
                throw ChildProcessError("DATABASE_URL is not set: run the suite with scripts/test.sh")
            }
            return url
        }
    }

    /// With `CHAT_TEST_DATABASE_PATH=pgbouncer` (scripts/test.sh's second pass), the servers'
    /// pools go through the suite's PgBouncer in transaction pooling mode and LISTEN goes direct.
    static func databasePathEnvironment(directURL: String) -> [String: String] {
        let environment = ProcessInfo.processInfo.environment
        guard environment["CHAT_TEST_DATABASE_PATH"] == "pgbouncer" else { return [:] }
        return [
            "DATABASE_URL": environment["TEST_PGBOUNCER_URL"] ?? "TEST_PGBOUNCER_URL is not set",
            "DATABASE_POOL_MODE": "transaction", "DATABASE_LISTEN_URL": directURL,
        ]
    }

    func http(_ server: ServerProcess) -> HTTPTestClient { HTTPTestClient(port: server.port) }

    /// The value of the first line of `server`'s /metrics that starts with `linePrefix`
    /// (a family name and a space, or a name and the start of its labels); nil if none does.
    static func metric(_ linePrefix: String, of server: ServerProcess) async throws -> Double? {
        let client = HTTPTestClient(port: server.port)
        defer { Task { await client.close() } }
        let text = try await client.request("GET", "/metrics", token: nil).text
        return text.split(separator: "\n").first { $0.hasPrefix(linePrefix) }
            .flatMap { Double($0.split(separator: " ").last!) }
    }

    /// A user known to the server (created from its token on first use).
    func makeUser(_ name: String = "user") async throws -> Chatter {
        let id = Int64.random(in: 1_000_000_000...9_000_000_000_000)
        let token = try await TestToken.make(secret: Self.secret, userID: id, name: "\(name)\(id % 10_000)")
        let client = http(a)
        defer { Task { await client.close() } }
        let response = try await client.request("GET", "/auth/me", token: token)
        #expect(response.status == 200, "\(response)")
        return Chatter(id: id, name: "\(name)\(id % 10_000)", token: token)
    }

    /// A group room of `owner` and `others` (a group needs a second member: one is made if none is given).
    func makeGroup(_ owner: Chatter, with others: [Chatter]) async throws -> Int64 {
        let others = others.isEmpty ? [try await makeUser("extra")] : others
        struct Body: Encodable {
            var room_name = "room"
            var room_type = "group"
            var participant_ids: [Int64]
        }
        let client = http(a)
        defer { Task { await client.close() } }
        let response = try await client.request(
            "POST", "/chat/rooms/", token: owner.token, json: Body(participant_ids: others.map(\.id)))
        #expect(response.status == 201, "\(response)")
        return try #require(try response.object().int("room_id"))
    }

    /// Posts a text message over REST; returns its id.
    @discardableResult
    func post(_ text: String, by user: Chatter, room: Int64, via client: HTTPTestClient) async throws -> Int64 {
        struct Body: Encodable { var message_content: String }
        let response = try await client.request(
            "POST", "/chat/rooms/\(room)/messages/", token: user.token, json: Body(message_content: text))
        #expect(response.status == 201, "\(response)")
        return try #require(try response.object().int("message_id"))
    }

    /// Deactivates the participant with SQL under the servers' own session setting, so the
    /// triggers stay silent: as if the removal's NOTIFY were lost.
    func removeSilently(_ user: Chatter, from room: Int64) async throws {
        try await database.withConnection { connection in
            _ = try await connection.simpleQuery("SET chat.announces_own_changes = on")
            try await connection.execute(
                "UPDATE room_participants SET is_active = false WHERE room_id = \(room) AND user_id = \(user.id)")
            _ = try await connection.simpleQuery("RESET chat.announces_own_changes")
        }
    }

    /// Deactivates the user as an operator would, but with the announcing trigger skipped
    /// (`session_replication_role = replica`): as if its notification were lost.
    func deactivateSilently(_ user: Chatter) async throws {
        try await database.withConnection { connection in
            _ = try await connection.simpleQuery("SET session_replication_role = replica")
            try await connection.execute("UPDATE users SET is_active = false WHERE user_id = \(user.id)")
            _ = try await connection.simpleQuery("RESET session_replication_role")
        }
    }

    func socket(_ server: ServerProcess, room: Int64?, as user: Chatter, query: String = "") async throws
        -> WebSocketTestClient
    {
        let path = room.map { "/chat/ws/\($0)" } ?? "/chat/ws"
        return try await WebSocketTestClient.connect(port: server.port, path: "\(path)?token=\(user.token)\(query)")
    }
}

struct Chatter: Sendable {
    var id: Int64
    var name: String
    var token: String
}

/// Starts `count` servers (named a, b, ...) and runs `body`; the servers stop afterwards.
func withCluster(
    _ count: Int = 2, environment: [String: String] = [:], _ body: @Sendable (Cluster) async throws -> Void
) async throws {
    let logDirectory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("chat-realtime-tests")
    try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
    let url = try Cluster.databaseURL
    var servers: [ServerProcess] = []
    for index in 0..<count {
        let name = String(UnicodeScalar(UInt8(97 + index)))
        var env = [
            "DATABASE_URL": url, "JWT_SECRET": Cluster.secret, "MIGRATE_ON_START": "false", "LOG_LEVEL": "warning",
            "UPLOAD_DIR": logDirectory.appendingPathComponent("uploads").path, "INSTANCE_ID": "test-\(name)-\(UUID())",
            "RETENTION_INTERVAL_SECONDS": "0",
        ]
        env.merge(Cluster.databasePathEnvironment(directURL: url)) { _, new in new }
        env.merge(environment) { _, new in new }
        servers.append(
            ServerProcess(name: "\(name)-\(UUID().uuidString.prefix(8))", port: try ServerProcess.freePort(),
                environment: env, logDirectory: logDirectory))
    }
    let database = PostgresClient(configuration: PostgresConfiguration(url: url, applicationName: "realtime-tests"))
    let cluster = Cluster(servers: servers, database: database)
    do {
        for server in servers { try await server.start() }
        try await body(cluster)
    } catch {
        for server in servers { await server.terminate() }
        await database.shutdown()
        throw error
    }
    for server in servers { await server.terminate() }
    await database.shutdown()
}

extension WebSocketTestClient {
    /// Reads `message` frames until `count` have arrived; returns their ids in arrival order.
    func messageIDs(count: Int, timeout: Duration = .seconds(30)) async throws -> [Int64] {
        var ids: [Int64] = []
        while ids.count < count {
            do {
                let frame = try await next(type: "message", timeout: timeout)
                ids.append(try #require(frame.int("message_id")))
            } catch {
                Issue.record("after \(ids.count) of \(count) messages (last \(ids.suffix(3))): \(error)")
                throw error
            }
        }
        return ids
    }

    /// The next `type` frame about `userID`, skipping others.
    func next(type: String, about userID: Int64, timeout: Duration = .seconds(10)) async throws -> JSONObject {
        while true {
            let frame = try await next(type: type, timeout: timeout)
            if frame.int("user_id") == userID { return frame }
        }
    }

    /// Waits until the server has answered a ping, so that the socket is subscribed.
    func ready() async throws {
        try await send(text: #"{"type":"ping"}"#)
        _ = try await next(type: "pong")
    }

    /// The close code, handing every text frame before it to `check`.
    func closeCode(timeout: Duration = .seconds(30), checking check: (String) -> Void) async throws -> Int? {
        while true {
            switch try await next(timeout: timeout) {
            case .text(let text): check(text)
            case .binary: break
            case .close(let code, _): return code
            }
        }
    }

    /// The close event, skipping frames before it.
    func closeEvent(timeout: Duration = .seconds(30)) async throws -> (code: Int?, reason: String) {
        while true {
            if case .close(let code, let reason) = try await next(timeout: timeout) { return (code, reason) }
        }
    }
}
