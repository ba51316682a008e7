import ChatTestKit
import Foundation
import Postgres
import Testing

/// Read replicas against the real streaming replica scripts/test.sh makes with
/// `pg_basebackup -R` (TEST_REPLICA_URL, TEST_REPLICA_DATADIR). Its lag is made real with
/// `recovery_min_apply_delay`; the tests stop and start it. Serialized: they share it.
@Suite(.serialized) struct ReplicaTests {
    static func setting(_ key: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[key], !value.isEmpty else {
            throw ChildProcessError("\(key) is not set: run the suite with scripts/test.sh")
        }
        return value
    }

    /// Delays the replica's replay of every commit by `delay` (0: none), and waits until it
    /// is in effect and the replica has caught up with the primary.
    static func applyDelay(_ delay: String, primary: PostgresClient) async throws {
        let replica = PostgresClient(configuration: PostgresConfiguration(url: try setting("TEST_REPLICA_URL")))
        defer { Task { await replica.shutdown() } }
        try await replica.withConnection { connection in
            _ = try await connection.simpleQuery("ALTER SYSTEM SET recovery_min_apply_delay = '\(delay)'")
            _ = try await connection.simpleQuery("SELECT pg_reload_conf()")
        }
        let target = try await primary.queryRow("SELECT pg_current_wal_insert_lsn()::text").decode(String.self, column: 0)
        for _ in 0..<200 {
            let row = try await replica.queryRow(
                "SELECT current_setting('recovery_min_apply_delay'), pg_last_wal_replay_lsn() >= \(target)::pg_lsn")
            let (current, caughtUp) = (try row.decode(String.self, column: 0), try row.decode(Bool.self, column: 1))
            if (current == delay || (delay == "0" && current == "0")) && caughtUp { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the replica did not take recovery_min_apply_delay = \(delay) or catch up")
    }

    /// `pg_ctl` on the replica's data directory, as the cluster's owner.
    static func replicaControl(_ action: String) async throws {
        let pgctl = try setting("TEST_PG_BIN") + "/pg_ctl"
        let directory = try setting("TEST_REPLICA_DATADIR")
        var arguments = ["-D", directory, "-w", "-t", "60"]
        arguments += action == "stop" ? ["-m", "fast", "stop"] : ["-l", directory + "/server.log", "start"]
        let status =
            getuid() == 0
            ? try await runCommand("/usr/sbin/runuser", ["-u", "postgres", "--", pgctl] + arguments)
            : try await runCommand(pgctl, arguments)
        guard status == 0 else { throw ChildProcessError("pg_ctl \(action) failed on the replica (status \(status))") }
    }

    static func environment(maxLag: Int) throws -> [String: String] {
        ["DATABASE_REPLICA_URLS": try setting("TEST_REPLICA_URL"), "REPLICA_MAX_LAG_MS": "\(maxLag)"]
    }

    /// Ids in the first history page (newest 50).
    static func historyIDs(_ client: HTTPTestClient, room: Int64, as user: Chatter) async throws -> [Int64] {
        let response = try await client.request("GET", "/chat/rooms/\(room)/messages/?size=50", token: user.token)
        #expect(response.status == 200, "\(response)")
        return try #require(try response.object().objects("messages")).compactMap { $0.int("message_id") }
    }

    /// An insert made with SQL on the primary, as an operator's script or another service
    /// would: no API write of any user of this instance precedes it.
    static func insertWithSQL(_ text: String, room: Int64, sender: Chatter, on database: PostgresClient) async throws
        -> Int64
    {
        try await database.queryRow(
            """
            INSERT INTO messages (room_id, sender_id, message_content, message_type)
            VALUES (\(room), \(sender.id), \(text), 'text') RETURNING message_id
            """
        ).decode(Int64.self, column: 0)
    }

    @Test func readsGoToALaggingReplicaAndWritersStillSeeTheirOwnWrites() async throws {
        try await withCluster(1, environment: try Self.environment(maxLag: 5_000)) { cluster in
            try await Self.applyDelay("3s", primary: cluster.database)
            defer { Task { try? await Self.applyDelay("0", primary: cluster.database) } }
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let client = cluster.http(cluster.a)
            defer { Task { await client.close() } }

            // Alice creates the room and at once lists it: her own write, read from the primary.
            let room = try await cluster.makeGroup(alice, with: [bob])
            let list = try await client.request("GET", "/chat/rooms/", token: alice.token)
            #expect(try list.object().objects("rooms")?.contains { $0.int("room_id") == room } == true, "\(list)")
            // Bob, added by her, may read the room at once too (its creation counts for every member).
            #expect(try await Self.historyIDs(client, room: room, as: bob) == [])

            // Alice posts and at once reads: her message is there.
            let posted = try await cluster.post("mine", by: alice, room: room, via: client)
            #expect(try await Self.historyIDs(client, room: room, as: alice) == [posted])

            // Once their read-your-writes window has passed (REPLICA_MAX_LAG_MS + 1.2 s) and
            // the replica has the room, a message written with SQL is not yet visible to Bob:
            // his reads are served by the replica, 3 s behind.
            try await Task.sleep(for: .seconds(6.5))
            let hidden = try await Self.insertWithSQL("by sql", room: room, sender: alice, on: cluster.database)
            let served = try await Cluster.metric("db_replica_reads_total", of: cluster.a) ?? 0
            #expect(try await Self.historyIDs(client, room: room, as: bob) == [posted], "served by the lagging replica")
            #expect((try await Cluster.metric("db_replica_reads_total", of: cluster.a) ?? 0) > served)
            // ...and reaches him once the replica replays it.
            var seen = false
            for _ in 0..<100 where !seen {
                seen = try await Self.historyIDs(client, room: room, as: bob).first == hidden
                if !seen { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(seen, "the replica replayed the SQL insert")
        }
    }

    @Test func aThousandWritesEachReadAtOnceAreNeverStale() async throws {
        try await withCluster(1, environment: try Self.environment(maxLag: 10_000)) { cluster in
            try await Self.applyDelay("2s", primary: cluster.database)
            defer { Task { try? await Self.applyDelay("0", primary: cluster.database) } }
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let client = cluster.http(cluster.a)
            defer { Task { await client.close() } }
            var stale: [String] = []
            for index in 0..<1000 {
                switch index % 4 {
                case 0:
                    // A settings change, then the settings.
                    let enabled = index % 8 == 0
                    _ = try await client.request(
                        "PUT", "/chat/rooms/\(room)/settings/", token: alice.token,
                        json: ["notification_enabled": enabled])
                    let settings = try await client.request("GET", "/chat/rooms/\(room)/settings/", token: alice.token)
                    if try settings.object().bool("notification_enabled") != enabled { stale.append("settings \(index)") }
                default:
                    // A message, then the history.
                    let id = try await cluster.post("n\(index)", by: alice, room: room, via: client)
                    if try await Self.historyIDs(client, room: room, as: alice).first != id { stale.append("history \(index)") }
                }
            }
            #expect(stale.isEmpty, "stale reads after own writes: \(stale.prefix(10))")
            let routed = try await Cluster.metric("db_replica_routed_reads_total{target=\"primary\"}", of: cluster.a) ?? 0
            // Each read follows its write by milliseconds, and the replica replays 2 s late: all
            // but the odd read that came after a check found the replica caught up go to the primary.
            #expect(routed >= 900, "the writer's reads went to the primary while the replica lagged (\(routed))")
        }
    }

    @Test func aReplicaTooFarBehindIsSkippedAndComesBackByItself() async throws {
        try await withCluster(1, environment: try Self.environment(maxLag: 300)) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let client = cluster.http(cluster.a)
            defer { Task { await client.close() } }
            try await Self.applyDelay("3s", primary: cluster.database)
            defer { Task { try? await Self.applyDelay("0", primary: cluster.database) } }
            try await Task.sleep(for: .seconds(2))  // past Bob's read-your-writes window (0.3 s + 1.2 s)
            // The replica replays 3 s late, far past REPLICA_MAX_LAG_MS: once it is seen
            // lagging, Bob's reads go to the primary and show the SQL insert at once.
            let inserted = try await Self.insertWithSQL("fresh", room: room, sender: alice, on: cluster.database)
            var up = 1.0
            for _ in 0..<50 where up == 1 {
                up = try await Cluster.metric("db_replica_up{", of: cluster.a) ?? 1
                if up == 1 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(up == 0, "the lagging replica is skipped")
            #expect((try await Cluster.metric("db_replica_lag_seconds{", of: cluster.a) ?? 0) > 0.3)
            #expect(try await Self.historyIDs(client, room: room, as: bob).first == inserted)
            // When it has caught up it is used again, without a restart.
            for _ in 0..<100 where up == 0 {
                up = try await Cluster.metric("db_replica_up{", of: cluster.a) ?? 0
                if up == 0 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(up == 1, "the replica is back in use")
        }
    }

    @Test func stoppingTheReplicaMidTestLosesNoRequest() async throws {
        try await withCluster(1, environment: try Self.environment(maxLag: 5_000)) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let posted = try await cluster.post("one", by: alice, room: room, via: cluster.http(cluster.a))
            try await Task.sleep(for: .seconds(7))  // reads by either now go to the replica
            let readers = (0..<4).map { _ in cluster.http(cluster.a) }
            defer { Task { for client in readers { await client.close() } } }
            let stop = ContinuousClock.now + .seconds(6)
            async let failures: [String] = withThrowingTaskGroup(of: [String].self) { group in
                for client in readers {
                    group.addTask {
                        var failures: [String] = []
                        while ContinuousClock.now < stop {
                            let response = try await client.request(
                                "GET", "/chat/rooms/\(room)/messages/", token: bob.token)
                            if response.status != 200 { failures.append("\(response)") }
                            let list = try await client.request("GET", "/chat/rooms/", token: bob.token)
                            if list.status != 200 { failures.append("\(list)") }
                        }
                        return failures
                    }
                }
                var all: [String] = []
                for try await part in group { all += part }
                return all
            }
            try await Task.sleep(for: .seconds(1))
            try await Self.replicaControl("stop")
            try await Task.sleep(for: .seconds(2))
            let ready = try await cluster.http(cluster.a).request("GET", "/ready")
            #expect(ready.status == 200, "/ready follows the primary only")
            try await Self.replicaControl("start")
            #expect(try await failures == [], "no request failed while the replica went away")
            #expect(try await Self.historyIDs(cluster.http(cluster.a), room: room, as: bob) == [posted])
            var up = 0.0
            for _ in 0..<100 where up == 0 {
                up = try await Cluster.metric("db_replica_up{", of: cluster.a) ?? 0
                if up == 0 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(up == 1, "the restarted replica is used again")
        }
    }
}
