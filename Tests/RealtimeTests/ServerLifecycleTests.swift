import ChatTestKit
import Foundation
import Testing

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
}
