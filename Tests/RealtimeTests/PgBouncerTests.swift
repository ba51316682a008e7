import ChatTestKit
import Foundation
import Postgres
import Testing

/// Servers whose request pools go through a real PgBouncer in transaction pooling mode
/// (started by scripts/test.sh with 4 server connections per database), LISTEN direct.
/// scripts/test.sh also runs the multi-instance suites a second time this way.
@Suite(.serialized) struct PgBouncerTests {
    static var pgbouncerURL: String {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["TEST_PGBOUNCER_URL"], !url.isEmpty else {
                throw ChildProcessError("TEST_PGBOUNCER_URL is not set: run the suite with scripts/test.sh")
            }
            return url
        }
    }

    /// The suite's PgBouncer URL for another database of its `[databases]` section.
    static func pgbouncerURL(database: String) throws -> String {
        let url = try pgbouncerURL
        return String(url[..<url.lastIndex(of: "/")!]) + "/\(database)"
    }

    /// The environment of a server behind PgBouncer: `database` is `chat` (its entry sets the
    /// sessions' settings) or `chat_bare` (it does not).
    static func environment(database: String = "chat", poolMode: String? = "transaction") throws -> [String: String] {
        var environment = [
            "DATABASE_URL": try pgbouncerURL(database: database),
            "DATABASE_LISTEN_URL": try Cluster.databaseURL,
        ]
        environment["DATABASE_POOL_MODE"] = poolMode
        return environment
    }

    /// PgBouncer's own counters (`SHOW STATS` on its admin console) for database `chat`.
    static func transactionsServed() async throws -> Int {
        let admin = PostgresClient(
            configuration: PostgresConfiguration(url: try pgbouncerURL(database: "pgbouncer"), poolMode: .transaction))
        defer { Task { await admin.shutdown() } }
        return try await admin.withConnection { connection in
            for row in try await connection.simpleQuery("SHOW STATS") where try row.decode(String.self, "database") == "chat" {
                return Int(try row.decode(String.self, "total_xact_count")) ?? -1
            }
            return -1
        }
    }

    @Test func twoInstancesBehindPgBouncerDeliverEveryMessageOnceInOrder() async throws {
        let before = try await Self.transactionsServed()
        try await withCluster(2, environment: try Self.environment().merging(["DB_POOL_SIZE": "12"]) { $1 }) { cluster in
            let users = [try await cluster.makeUser("a"), try await cluster.makeUser("b"), try await cluster.makeUser("c")]
            let room = try await cluster.makeGroup(users[0], with: Array(users.dropFirst()))
            let socket = try await cluster.socket(cluster.b, room: room, as: users[1])
            try await socket.ready()
            // 12 clients at once on instance a: more client transactions in flight than the
            // 4 server sessions PgBouncer has, so consecutive statements of one pooled
            // connection run on different sessions (named statements would fail here).
            let clients = (0..<12).map { _ in cluster.http(cluster.a) }
            defer { Task { for client in clients { await client.close() } } }
            let sent = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        var ids: [Int64] = []
                        for number in 0..<20 {
                            let user = users[index % users.count]
                            ids.append(try await cluster.post("m\(index)-\(number)", by: user, room: room, via: client))
                            // Reads and edits too: every kind of statement goes through the pooler.
                            let page = try await client.request(
                                "GET", "/chat/rooms/\(room)/messages/?size=5", token: user.token)
                            #expect(page.status == 200, "\(page)")
                        }
                        return ids
                    }
                }
                var all: [Int64] = []
                for try await ids in group { all += ids }
                return all
            }
            #expect(Set(sent).count == 240)
            let received = try await socket.messageIDs(count: 240)
            #expect(received == sent.sorted(), "every message once, in id order")
        }
        let after = try await Self.transactionsServed()
        #expect(after - before >= 480, "PgBouncer served the requests' transactions (\(before) → \(after))")
    }

    @Test func sessionModeThroughPgBouncerFailsWithPgBouncersReason() async throws {
        // Without DATABASE_POOL_MODE=transaction the pool sends session settings at connect,
        // which PgBouncer refuses: /ready says the database is unavailable, the log says why.
        try await withCluster(1, environment: try Self.environment(poolMode: nil)) { cluster in
            let client = cluster.http(cluster.a)
            defer { Task { await client.close() } }
            let ready = try await client.request("GET", "/ready")
            #expect(ready.status == 503, "\(ready)")
            let log = try String(contentsOf: cluster.a.logFile, encoding: .utf8)
            #expect(log.contains("unsupported startup parameter: options"), "\(cluster.a.logTail())")
        }
    }

    @Test func aPoolerThatDoesNotSetTheSessionSettingsIsRefusedAtStart() async throws {
        // The send path depends on chat.announces_own_changes (sql/0006): without it a send
        // fails, so the server does not start, and says what to put in connect_query.
        let server = ServerProcess(
            name: "bare-pooler-\(UUID().uuidString.prefix(8))", port: try ServerProcess.freePort(),
            environment: try Self.environment(database: "chat_bare").merging(
                ["JWT_SECRET": Cluster.secret, "MIGRATE_ON_START": "false"]) { $1 },
            logDirectory: URL(fileURLWithPath: NSTemporaryDirectory()))
        await #expect(throws: ChildProcessError.self) { try await server.start(timeout: .seconds(30)) }
        let log = server.logTail()
        #expect(log.contains("the pooled sessions lack"), "\(log)")
        #expect(log.contains("chat.announces_own_changes"), "\(log)")
        #expect(log.contains("connect_query="), "\(log)")
    }

    @Test func transactionModeWithoutAListenURLIsRefused() async throws {
        var environment = try Self.environment()
        environment["DATABASE_LISTEN_URL"] = nil
        let server = ServerProcess(
            name: "no-listen-url-\(UUID().uuidString.prefix(8))", port: try ServerProcess.freePort(),
            environment: environment.merging(
                ["JWT_SECRET": Cluster.secret, "MIGRATE_ON_START": "false", "DATABASE_LISTEN_URL": ""]) { $1 },
            logDirectory: URL(fileURLWithPath: NSTemporaryDirectory()))
        await #expect(throws: ChildProcessError.self) { try await server.start(timeout: .seconds(20)) }
        #expect(server.logTail().contains("DATABASE_POOL_MODE=transaction needs DATABASE_LISTEN_URL"), "\(server.logTail())")
    }
}
