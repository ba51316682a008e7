import ChatTestKit
import Foundation
import Postgres
import Testing

/// Issue 12.11: the presence pushed to sockets converges to what REST shows within a
/// heartbeat after a stalled instance, a restart under the same INSTANCE_ID, or a failed
/// presence write.
@Suite struct PresenceFaultTests {
    /// Takes, until the transaction ends, the advisory lock under which every instance writes
    /// `user`'s presence (`PresenceStore.lockSpace`): their presence writes wait for it, and
    /// no other test's do (a table lock would fail every test's writes at once).
    static func holdPresenceLock(of user: Chatter, on connection: PostgresConnection) async throws {
        try await connection.execute("SELECT pg_advisory_xact_lock(\(Int32(0x7072_6573)), hashint8(\(user.id)))")
    }

    func isOnline(_ user: Chatter, in room: Int64, asked by: Chatter, via server: ServerProcess, _ cluster: Cluster)
        async throws -> Bool?
    {
        let client = cluster.http(server)
        defer { Task { await client.close() } }
        let status = try await client.request("GET", "/chat/rooms/\(room)/online-status/", token: by.token)
        return try status.json().arrayValue?.compactMap(\.objectValue).first { $0.int("user_id") == user.id }?.bool("is_online")
    }

    /// (a) An instance frozen past the expiry is reaped by the other (its users go offline);
    /// when it runs again it registers again and its users are announced online.
    @Test func aFrozenInstanceAnnouncesItsUsersAgainWhenItResumes() async throws {
        try await withCluster(2, environment: ["PRESENCE_HEARTBEAT_SECONDS": "1", "PRESENCE_EXPIRY_SECONDS": "3"]) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let watcher = try await cluster.socket(cluster.b, room: room, as: bob)
            try await watcher.ready()
            let frozen = try await cluster.socket(cluster.a, room: room, as: alice)
            try await frozen.ready()
            #expect(try await watcher.next(type: "user_status", about: alice.id).string("status") == "online")
            #expect(kill(cluster.a.pid, SIGSTOP) == 0)
            #expect(try await watcher.next(type: "user_status", about: alice.id, timeout: .seconds(30)).string("status") == "offline")
            #expect(kill(cluster.a.pid, SIGCONT) == 0)
            #expect(try await watcher.next(type: "user_status", about: alice.id, timeout: .seconds(30)).string("status") == "online")
            #expect(try await isOnline(alice, in: room, asked: bob, via: cluster.b, cluster) == true)
            try await frozen.close()
            try await watcher.close()
        }
    }

    /// Alice is online on instance a, watched from b; a is killed and `restart` starts it again
    /// under the same INSTANCE_ID: bob's socket hears her go offline, as REST shows.
    func restartAnnouncesTheOldSocketsOffline(
        environment: [String: String], restart: @Sendable (Cluster, Chatter) async throws -> Void
    ) async throws {
        try await withCluster(2, environment: environment) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let watcher = try await cluster.socket(cluster.b, room: room, as: bob)
            try await watcher.ready()
            let doomed = try await cluster.socket(cluster.a, room: room, as: alice)
            try await doomed.ready()
            #expect(try await watcher.next(type: "user_status", about: alice.id).string("status") == "online")
            await cluster.a.kill()
            doomed.abort()
            try await restart(cluster, alice)
            #expect(try await watcher.next(type: "user_status", about: alice.id, timeout: .seconds(30)).string("status") == "offline")
            #expect(try await isOnline(alice, in: room, asked: bob, via: cluster.b, cluster) == false)
            try await watcher.close()
        }
    }

    /// (b) A process killed and restarted under the same INSTANCE_ID (before anyone reaps
    /// it) announces that the old process's users went offline.
    @Test func aRestartUnderTheSameInstanceIDAnnouncesTheOldSocketsOffline() async throws {
        try await restartAnnouncesTheOldSocketsOffline(
            environment: ["PRESENCE_HEARTBEAT_SECONDS": "1", "PRESENCE_EXPIRY_SECONDS": "300"]
        ) { cluster, _ in
            try await cluster.a.start()
        }
    }

    /// (b') The same, when the restarted process cannot clear the old rows at start (here:
    /// alice's presence lock is held past DB_LOCK_TIMEOUT_MS): a following heartbeat
    /// reconciles them, and the old sockets are announced offline all the same.
    @Test func aRestartThatCannotClearTheOldRowsReconcilesThem() async throws {
        try await restartAnnouncesTheOldSocketsOffline(
            environment: ["PRESENCE_HEARTBEAT_SECONDS": "1", "PRESENCE_EXPIRY_SECONDS": "300", "DB_LOCK_TIMEOUT_MS": "500"]
        ) { cluster, alice in
            let failure = "presence unregister failed"
            let failuresBefore = cluster.a.logTail(lines: 100_000).components(separatedBy: failure).count
            try await cluster.database.withTransaction { connection in
                try await Self.holdPresenceLock(of: alice, on: connection)
                try await cluster.a.start()
                // Held until the new process has tried, and failed, to clear the old rows.
                let deadline = ContinuousClock.now + .seconds(30)
                while cluster.a.logTail(lines: 100_000).components(separatedBy: failure).count == failuresBefore {
                    guard ContinuousClock.now < deadline else {
                        Issue.record("the restarted server never tried to clear its rows")
                        return
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
    }

    /// (c) A presence write that fails (here: alice's presence lock is held past
    /// DB_LOCK_TIMEOUT_MS) is made good, and announced, at a following heartbeat.
    @Test func aFailedPresenceWriteIsReconciled() async throws {
        try await withCluster(
            1, environment: ["PRESENCE_HEARTBEAT_SECONDS": "1", "PRESENCE_EXPIRY_SECONDS": "20", "DB_LOCK_TIMEOUT_MS": "500"]
        ) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let watcher = try await cluster.socket(cluster.a, room: room, as: bob)
            try await watcher.ready()
            // Hold alice's presence lock while her socket opens: her presence write fails.
            let opened = try await cluster.database.withTransaction { connection in
                try await Self.holdPresenceLock(of: alice, on: connection)
                let socket = try await cluster.socket(cluster.a, room: room, as: alice)
                try await socket.ready()
                try await Task.sleep(for: .seconds(2))
                return socket
            }
            #expect(try await watcher.next(type: "user_status", about: alice.id, timeout: .seconds(30)).string("status") == "online")
            #expect(try await isOnline(alice, in: room, asked: bob, via: cluster.a, cluster) == true)
            try await opened.close()
            #expect(try await watcher.next(type: "user_status", about: alice.id, timeout: .seconds(30)).string("status") == "offline")
            try await watcher.close()
        }
    }
}
