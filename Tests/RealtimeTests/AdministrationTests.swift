import ChatTestKit
import Foundation
import Testing

/// The psql recipes of docs/psql/ (shown in the README) run with the real `psql` against a
/// running server, and their effect reaches live clients like an API change.
@Suite struct AdministrationTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs `psql -f docs/psql/<recipe>.sql` with `-v` variables; returns its output.
    func psql(_ recipe: String, _ variables: [String: String] = [:]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
            + variables.sorted { $0.key < $1.key }.flatMap { ["-v", "\($0.key)=\($0.value)"] }
            + ["-f", Self.repository.appendingPathComponent("docs/psql/\(recipe).sql").path, try Cluster.databaseURL]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "psql -f \(recipe).sql: \(output)")
        return output
    }

    @Test func recipesWorkOnARunningServer() async throws {
        try await withCluster(1) { cluster in
            let (alice, bob, carol) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"), try await cluster.makeUser("carol"))
            let room = try await cluster.makeGroup(alice, with: [bob, carol])
            let bobSocket = try await cluster.socket(cluster.a, room: room, as: bob)
            try await bobSocket.ready()
            let carolSocket = try await cluster.socket(cluster.a, room: room, as: carol)
            try await carolSocket.ready()

            // Presence rows are written as sockets open, and a failed write (PresenceFaultTests
            // locks the table for a while, in parallel) is mended at the next heartbeat.
            var online = try psql("who-is-online")
            for _ in 0..<40 where !online.contains(String(bob.id)) {
                try await Task.sleep(for: .milliseconds(250))
                online = try psql("who-is-online")
            }
            #expect(online.contains(String(bob.id)) && online.contains(cluster.a.environment["INSTANCE_ID"] ?? "?"), "\(online)")
            let found = try psql("find-user", ["name": bob.name])
            #expect(found.contains(String(bob.id)) && found.contains(" t "), "\(found)")
            #expect(try psql("rooms").contains(String(room)))

            let http = cluster.http(cluster.a)
            let message = try await cluster.post("지울 메시지", by: alice, room: room, via: http)
            _ = try psql("soft-delete-message", ["message_id": String(message)])
            var deleted = try await carolSocket.next(type: "message_deleted")
            #expect(deleted.int("message_id") == message)
            deleted = try await bobSocket.next(type: "message_deleted")
            #expect(deleted.int("message_id") == message)

            _ = try psql("remove-participant", ["room_id": String(room), "user_id": String(carol.id)])
            #expect(try await carolSocket.closeEvent().code == 4403)
            #expect(try await bobSocket.next(type: "participant_left", about: carol.id).int("user_id") == carol.id)

            _ = try psql("deactivate-user", ["user_id": String(bob.id)])
            #expect(try await bobSocket.closeEvent().code == 4403)
            var status = 0
            for _ in 0..<50 {
                status = try await http.request("GET", "/auth/me", token: bob.token).status
                if status == 403 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(status == 403)
            await http.close()
        }
    }

    /// The README shows each recipe as it is tested.
    @Test func theReadmeShowsEveryRecipe() throws {
        let readme = try String(contentsOf: Self.repository.appendingPathComponent("README.md"), encoding: .utf8)
        let directory = Self.repository.appendingPathComponent("docs/psql")
        let recipes = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }
        #expect(recipes.count >= 6)
        for recipe in recipes {
            let text = try String(contentsOf: directory.appendingPathComponent(recipe), encoding: .utf8)
            #expect(readme.contains(text.trimmingCharacters(in: .whitespacesAndNewlines)), "README lacks docs/psql/\(recipe)")
        }
    }
}
