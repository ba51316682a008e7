import ChatTestKit
import Foundation
import Testing
import Postgres

@Suite struct ServerLifecycleTests {
    /// A server that cannot start (here: no migrations directory) exits with the reason
    /// instead of hanging with its background services half stopped.
    @Test func aServerThatCannotStartExitsWithTheReason() async throws {
        let logs = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("chat-realtime-tests")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let server = ServerProcess(
            name: "no-migrations-\(UUID().uuidString.prefix(8))", port: try ServerProcess.freePort(),
            environment: [
                "DATABASE_URL": try Cluster.databaseURL, "JWT_SECRET": Cluster.secret, "MIGRATE_ON_START": "true",
                "MIGRATIONS_DIR": "/nonexistent/chat-migrations", "UPLOAD_DIR": logs.appendingPathComponent("uploads").path,
            ],
            logDirectory: logs)
        do {
            try await server.start(timeout: .seconds(60))
            Issue.record("the server started without its migrations")
        } catch let error as ChildProcessError {
            #expect(error.description.contains("before becoming healthy"), "\(error)")
            #expect(error.description.contains("migrations directory"), "\(error)")
        }
        await server.terminate()
    }

    /// SIGTERM closes every WebSocket with 1001 (going away, so clients reconnect elsewhere),
    /// a client that stops reading cannot hold the exit, and the instance's presence is gone.
    @Test func shutdownSaysGoingAwayAndCannotBeHeldByAClientThatDoesNotRead() async throws {
        try await withCluster(1, environment: ["SHUTDOWN_GRACE_SECONDS": "2"]) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let reader = try await cluster.socket(cluster.a, room: room, as: bob)
            try await reader.ready()
            let userStream = try await cluster.socket(cluster.a, room: nil, as: bob)
            try await userStream.ready()
            // A client that stopped reading, with its buffers full.
            let stalled = try await WebSocketTestClient.connect(
                port: cluster.a.port, path: "/chat/ws/\(room)?token=\(alice.token)", receiveBufferSize: 4096)
            try await stalled.ready()
            await stalled.pauseReading()
            let http = cluster.http(cluster.a)
            let text = String(repeating: "가", count: 3000)
            for _ in 0..<300 { try await cluster.post(text, by: bob, room: room, via: http) }
            await http.close()

            #expect(kill(cluster.a.pid, SIGTERM) == 0)
            for socket in [reader, userStream] {
                let close = try await socket.closeEvent(timeout: .seconds(30))
                #expect(close.code == 1001, "\(close)")
            }
            var exited = false
            for _ in 0..<300 where !exited {
                exited = !cluster.a.isRunning
                if !exited { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(exited, "still running 30 s after SIGTERM")
            let instance = cluster.a.environment["INSTANCE_ID"] ?? ""
            let presence = try await cluster.database.queryRow(
                "SELECT count(*) FROM presence_sessions WHERE instance_id = \(instance)"
            ).decode(Int.self, column: 0)
            #expect(presence == 0)
            stalled.abort()
        }
    }
}
