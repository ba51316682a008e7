import ChatTestKit
import Foundation
import Testing

/// Issue 12.1: an upgrade, refused or accepted, must leave nothing behind once its socket
/// closes (hummingbird-websocket 2.8.1, used until 164b0fd, kept every upgrade's context
/// alive; the server now upgrades with its own channel handlers, `ChatServerChannel`).
@Suite struct ConnectionLeakTests {
    /// A gauge of the server's /metrics.
    func gauge(_ name: String, _ cluster: Cluster) async throws -> Double {
        try #require(try await Cluster.metric("\(name) ", of: cluster.a), "\(name) not in /metrics")
    }

    /// 2,000 upgrades (half refused for a bad token, half accepted), ten at a time.
    func upgrades(_ cluster: Cluster, room: Int64, token: String) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<2000 {
                if index >= 10 { try await group.next() }
                let path = index % 2 == 0 ? "/chat/ws/\(room)?token=bad" : "/chat/ws/\(room)?token=\(token)"
                let port = cluster.a.port
                group.addTask {
                    let socket = try await WebSocketTestClient.connect(port: port, path: path)
                    if index % 2 == 0 {
                        #expect(try await socket.closeEvent().code == 4401)
                    } else {
                        try await socket.ready()
                        try await socket.close()
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func closedSocketsLeaveNothingBehind() async throws {
        // One malloc arena: RSS then follows what is alive, not how many threads allocated.
        try await withCluster(1, environment: ["MALLOC_ARENA_MAX": "1", "WS_MAX_SOCKETS_PER_USER": "100000"]) { cluster in
            let user = try await cluster.makeUser()
            let room = try await cluster.makeGroup(user, with: [])
            try await upgrades(cluster, room: room, token: user.token)
            let afterFirst = try await gauge("process_resident_memory_bytes", cluster)
            try await upgrades(cluster, room: room, token: user.token)
            // Every context and session of a closed socket is freed (they are counted in
            // init and deinit); closing finishes shortly after the client's close.
            var alive = (sessions: -1.0, contexts: -1.0)
            for _ in 0..<100 {
                alive = (try await gauge("chat_ws_sessions", cluster), try await gauge("chat_ws_upgrade_contexts", cluster))
                if alive == (0, 0) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(alive.sessions == 0, "sessions still alive after 4,000 closed sockets")
            #expect(alive.contexts == 0, "upgrade contexts still alive after 4,000 closed sockets")
            let afterSecond = try await gauge("process_resident_memory_bytes", cluster)
            #expect(afterSecond - afterFirst < 8_000_000, "RSS grew \(Int(afterSecond - afterFirst)) bytes over the second 2,000 upgrades")
            print("RSS after the first 2,000 upgrades: \(Int(afterFirst / 1024)) KB, after the second: \(Int(afterSecond / 1024)) KB")
        }
    }
}
