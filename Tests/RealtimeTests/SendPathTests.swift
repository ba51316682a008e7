import ChatTestKit
import Foundation
import Postgres
import Testing

/// The batched send path (`MessageWriter`, `sql/0006_send_path.sql`) against real server
/// processes: every request of a batch gets its own answer, a broken connection loses no
/// acknowledged message, psql inserts interleave in order, and a locked room stalls nobody else.
@Suite struct SendPathTests {
    struct Body: Encodable {
        var message_content: String
        var reply_to_message_id: Int64?
        var client_message_id: String?
    }

    @Test func everySendOfABatchGetsItsOwnAnswer() async throws {
        try await withCluster(1) { cluster in
            let (alice, bob, outsider) = (
                try await cluster.makeUser("alice"), try await cluster.makeUser("bob"), try await cluster.makeUser("out")
            )
            let room = try await cluster.makeGroup(alice, with: [bob])
            let otherRoom = try await cluster.makeGroup(bob, with: [alice])
            let foreign = try await cluster.post("elsewhere", by: bob, room: otherRoom, via: cluster.http(cluster.a))
            let clients = (0..<24).map { _ in cluster.http(cluster.a) }
            defer { Task { for client in clients { await client.close() } } }

            // Kinds of send, mixed so that every batch holds several of them.
            enum Kind: CaseIterable { case valid, repeated, badReply, outsider, noRoom }
            let kinds = (0..<240).map { Kind.allCases[$0 % Kind.allCases.count] }
            let answers: [(Kind, Int, Int64?)] = try await withThrowingTaskGroup(of: [(Int, Kind, Int, Int64?)].self) {
                group in
                for lane in 0..<clients.count {
                    group.addTask {
                        var answers: [(Int, Kind, Int, Int64?)] = []
                        for index in stride(from: lane, to: kinds.count, by: clients.count) {
                            let kind = kinds[index]
                            let (user, target, body): (Chatter, Int64, Body) =
                                switch kind {
                                case .valid: (alice, room, Body(message_content: "valid \(index)"))
                                case .repeated: (bob, room, Body(message_content: "again", client_message_id: "same-id"))
                                case .badReply: (alice, room, Body(message_content: "reply", reply_to_message_id: foreign))
                                case .outsider: (outsider, room, Body(message_content: "let me in"))
                                case .noRoom: (alice, 9_000_000_000_000, Body(message_content: "nowhere"))
                                }
                            let response = try await clients[lane].request(
                                "POST", "/chat/rooms/\(target)/messages/", token: user.token, json: body)
                            #expect(try response.object().string("detail") != nil || response.status < 300, "\(response)")
                            answers.append((index, kind, response.status, try? response.object().int("message_id")))
                        }
                        return answers
                    }
                }
                var all: [(Int, Kind, Int, Int64?)] = []
                for try await part in group { all += part }
                return all.sorted { $0.0 < $1.0 }.map { ($0.1, $0.2, $0.3) }
            }

            var repeatedIDs = Set<Int64>()
            var repeatedCreated = 0
            for (kind, status, id) in answers {
                switch kind {
                case .valid: #expect(status == 201)
                case .repeated:
                    #expect(status == 201 || status == 200)
                    if status == 201 { repeatedCreated += 1 }
                    if let id { repeatedIDs.insert(id) }
                case .badReply: #expect(status == 422)
                case .outsider: #expect(status == 403)
                case .noRoom: #expect(status == 404)
                }
            }
            // The repeated client_message_id was stored once, and every repeat got that message.
            #expect(repeatedCreated == 1)
            #expect(repeatedIDs.count == 1)
            let stored = try await cluster.database.queryRow(
                "SELECT count(*), count(*) FILTER (WHERE client_message_id = 'same-id') FROM messages WHERE room_id = \(room)"
            ).decode((Int, Int).self)
            #expect(stored.0 == kinds.filter { $0 == .valid }.count + 1)
            #expect(stored.1 == 1)
            // Ids follow the room's head.
            let head = try await cluster.database.queryRow(
                "SELECT last_message_id = (SELECT max(message_id) FROM messages WHERE room_id = \(room)) FROM rooms WHERE room_id = \(room)"
            ).decode(Bool.self, column: 0)
            #expect(head)
        }
    }

    @Test func aConnectionLostMidBatchLosesNoAcknowledgedMessage() async throws {
        try await withCluster(1) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let clients = (0..<16).map { _ in cluster.http(cluster.a) }
            defer { Task { for client in clients { await client.close() } } }
            let total = 480
            let application = cluster.applicationName(cluster.a)

            func send(_ index: Int, via client: HTTPTestClient) async throws -> (status: Int, id: Int64?) {
                let response = try await client.request(
                    "POST", "/chat/rooms/\(room)/messages/", token: alice.token,
                    json: Body(message_content: "m\(index)", client_message_id: "cm-\(index)"))
                #expect([200, 201, 503].contains(response.status), "\(response)")
                return (response.status, try? response.object().int("message_id"))
            }

            let killer = Task {
                // Terminate the server's connections a few times while the sends run.
                for _ in 0..<4 {
                    try await Task.sleep(for: .milliseconds(150))
                    try await cluster.database.execute(
                        """
                        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE application_name = \(application) AND pid <> pg_backend_pid()
                        """)
                }
            }
            var first: [Int: (status: Int, id: Int64?)] = [:]
            try await withThrowingTaskGroup(of: [(Int, (status: Int, id: Int64?))].self) { group in
                for lane in 0..<clients.count {
                    group.addTask {
                        var results: [(Int, (status: Int, id: Int64?))] = []
                        for index in stride(from: lane, to: total, by: clients.count) {
                            results.append((index, try await send(index, via: clients[lane])))
                        }
                        return results
                    }
                }
                for try await part in group { for (index, result) in part { first[index] = result } }
            }
            try await killer.value

            // Every acknowledged message is stored with its content.
            let acknowledged = first.filter { $0.value.status == 201 }
            #expect(!acknowledged.isEmpty)
            for (index, result) in acknowledged {
                let id = try #require(result.id)
                let content = try await cluster.database.queryOptionalRow(
                    "SELECT message_content FROM messages WHERE message_id = \(id) AND room_id = \(room)"
                )?.decode(String.self, column: 0)
                #expect(content == "m\(index)")
            }
            // A client retries what failed with the same client_message_id: each message ends up
            // stored exactly once, whether or not the failed attempt had committed.
            for (index, result) in first where result.status == 503 {
                var retried = try await send(index, via: clients[0])
                while retried.status == 503 { retried = try await send(index, via: clients[0]) }
            }
            let counts = try await cluster.database.queryRow(
                "SELECT count(*), count(DISTINCT client_message_id) FROM messages WHERE room_id = \(room)"
            ).decode((Int, Int).self)
            #expect(counts.0 == total)
            #expect(counts.1 == total)
        }
    }

    @Test func psqlInsertsInterleaveWithBatchedSendsInOrder() async throws {
        try await withCluster(2) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let watcher = try await cluster.socket(cluster.b, room: room, as: bob)
            try await watcher.ready()
            let clients = (0..<8).map { _ in cluster.http(cluster.a) }
            defer { Task { for client in clients { await client.close() } } }
            let perClient = 40
            let psqlInserts = 80
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in clients {
                    group.addTask {
                        for index in 0..<perClient { try await cluster.post("api \(index)", by: alice, room: room, via: client) }
                    }
                }
                group.addTask {
                    // As an operator's script would: plain INSERTs, ids and wake-ups from the triggers.
                    for index in 0..<psqlInserts {
                        try await cluster.database.execute(
                            """
                            INSERT INTO messages (room_id, sender_id, message_content, message_type)
                            VALUES (\(room), \(bob.id), \("psql \(index)"), 'text')
                            """)
                    }
                }
                try await group.waitForAll()
            }
            let expected = try await cluster.database.query(
                "SELECT message_id FROM messages WHERE room_id = \(room) ORDER BY message_id"
            ).map { try $0.decode(Int64.self, column: 0) }
            #expect(expected.count == clients.count * perClient + psqlInserts)
            let received = try await watcher.messageIDs(count: expected.count)
            #expect(received == expected)
            try await watcher.ready()
            #expect(!watcher.takeSkipped().contains { if case .text(let t) = $0 { t.contains(#""type":"message""#) } else { false } })
            try await watcher.close()
        }
    }

    @Test func aLockedRoomAnswers503AndOtherRoomsGoOn() async throws {
        try await withCluster(1, environment: ["DB_LOCK_TIMEOUT_MS": "300"]) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let stuck = try await cluster.makeGroup(alice, with: [bob])
            let free = try await cluster.makeGroup(alice, with: [bob])
            // A session that locked the room and went silent, as a frozen instance would.
            let holder = try await cluster.database.openDedicatedConnection()
            try await holder.simpleQuery("BEGIN")
            try await holder.execute("SELECT 1 FROM rooms WHERE room_id = \(stuck) FOR NO KEY UPDATE")

            let clients = (0..<6).map { _ in cluster.http(cluster.a) }
            defer { Task { for client in clients { await client.close() } } }
            let results: [(room: Int64, status: Int)] = try await withThrowingTaskGroup(of: (Int64, Int).self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        let target = index < 2 ? stuck : free
                        let response = try await client.request(
                            "POST", "/chat/rooms/\(target)/messages/", token: alice.token,
                            json: Body(message_content: "while locked"))
                        return (target, response.status)
                    }
                }
                var all: [(Int64, Int)] = []
                for try await result in group { all.append(result) }
                return all
            }
            for result in results {
                #expect(result.status == (result.room == stuck ? 503 : 201), "\(result)")
            }
            // The instance is healthy meanwhile.
            let ready = try await clients[0].request("GET", "/ready", token: nil)
            #expect(ready.status == 200)
            let me = try await clients[0].request("GET", "/auth/me", token: bob.token)
            #expect(me.status == 200)

            try await holder.simpleQuery("ROLLBACK")
            let after = try await clients[0].request(
                "POST", "/chat/rooms/\(stuck)/messages/", token: alice.token, json: Body(message_content: "unlocked"))
            #expect(after.status == 201)
            let stored = try await cluster.database.queryRow(
                "SELECT count(*) FROM messages WHERE room_id = \(stuck)"
            ).decode(Int.self, column: 0)
            #expect(stored == 1)
        }
    }

    /// A batch skips a locked room instead of waiting for it: other rooms' sends are stored
    /// while the room is held, and the room's own sends, moved to the waiting lane, are stored
    /// in order once it is released (before its lock timeout).
    @Test func aLockedRoomWaitsInItsOwnLaneAndKeepsItsOrder() async throws {
        try await withCluster(1, environment: ["DB_LOCK_TIMEOUT_MS": "60000"]) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let held = try await cluster.makeGroup(alice, with: [bob])
            let free = try await cluster.makeGroup(alice, with: [bob])
            let holder = try await cluster.database.openDedicatedConnection()
            try await holder.simpleQuery("BEGIN")
            try await holder.execute("SELECT 1 FROM rooms WHERE room_id = \(held) FOR NO KEY UPDATE")
            /// Waits until `count` of the server's sessions wait for a lock (the waiting lane).
            @Sendable func lockWaiters() async throws -> Int {
                try await cluster.database.queryRow(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%chat_send_messages%'"
                ).decode(Int.self, column: 0)
            }
            let clients = (0..<3).map { _ in cluster.http(cluster.a) }
            defer { Task { for client in clients { await client.close() } } }
            @Sendable func post(_ client: Int, _ room: Int64, _ text: String) async throws -> (status: Int, id: Int64?) {
                let response = try await clients[client].request(
                    "POST", "/chat/rooms/\(room)/messages/", token: alice.token, json: Body(message_content: text))
                return (response.status, try? response.object().int("message_id"))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let first = try await post(0, held, "first")
                    #expect(first.status == 201)
                }
                while try await lockWaiters() == 0 { try await Task.sleep(for: .milliseconds(20)) }
                group.addTask {
                    let second = try await post(1, held, "second")
                    #expect(second.status == 201)
                }
                // Another room goes through while the first room is held.
                let other = try await post(2, free, "meanwhile")
                #expect(other.status == 201)
                try await holder.simpleQuery("ROLLBACK")
                try await group.waitForAll()
            }
            let stored = try await cluster.database.query(
                "SELECT message_content FROM messages WHERE room_id = \(held) ORDER BY message_id"
            ).map { try $0.decode(String.self, column: 0) }
            #expect(stored == ["first", "second"])
        }
    }

    @Test func aFrozenInstanceDoesNotStallTheRoom() async throws {
        try await withCluster(2) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let watcher = try await cluster.socket(cluster.b, room: room, as: bob)
            try await watcher.ready()
            // Sends stream through instance A; it is frozen (SIGSTOP) while they are in flight.
            let clientsA = (0..<4).map { _ in HTTPTestClient(port: cluster.a.port, requestTimeout: .seconds(60)) }
            let streaming = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for client in clientsA {
                        group.addTask {
                            for index in 0..<50 {
                                _ = try await client.request(
                                    "POST", "/chat/rooms/\(room)/messages/", token: alice.token,
                                    json: Body(message_content: "through a \(index)"))
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(kill(cluster.a.pid, SIGSTOP) == 0)
            // Meanwhile instance B sends to the same room, and its subscriber hears it.
            let clientB = cluster.http(cluster.b)
            var sentThroughB: [Int64] = []
            for index in 0..<20 {
                sentThroughB.append(try await cluster.post("through b \(index)", by: bob, room: room, via: clientB))
            }
            var heard = Set<Int64>()
            while !heard.isSuperset(of: sentThroughB) {
                let frame = try await watcher.next(type: "message", timeout: .seconds(10))
                heard.insert(try #require(frame.int("message_id")))
            }
            let ready = try await clientB.request("GET", "/ready", token: nil)
            #expect(ready.status == 200)
            #expect(kill(cluster.a.pid, SIGCONT) == 0)
            try await streaming.value
            for client in clientsA { await client.close() }
            await clientB.close()
            try await watcher.close()
        }
    }

    @Test func aDeactivatedUserIsRefusedAtOnceBySendsAndSoonByEverything() async throws {
        try await withCluster(1) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let client = cluster.http(cluster.a)
            try await cluster.post("before", by: alice, room: room, via: client)
            #expect(try await client.request("GET", "/auth/me", token: alice.token).status == 200)
            try await cluster.database.execute("UPDATE users SET is_active = false WHERE user_id = \(alice.id)")
            // The send statement checks the account itself, whatever the authentication cache holds.
            let send = try await client.request(
                "POST", "/chat/rooms/\(room)/messages/", token: alice.token, json: Body(message_content: "after"))
            #expect(send.status == 403, "\(send)")
            // Everything else once the cached user expires (AUTH_CACHE_MS, 1 s by default).
            var status = 200
            for _ in 0..<100 where status != 403 {
                status = try await client.request("GET", "/auth/me", token: alice.token).status
                if status != 403 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(status == 403)
            await client.close()
        }
    }

    @Test func everyWriterGetsTheSameSearchDocument() async throws {
        try await withCluster(1) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let client = cluster.http(cluster.a)
            let viaAPI = try await cluster.post("김철수가 보낸 Hello, World!", by: alice, room: room, via: client)
            let edited = try await cluster.post("처음 내용", by: alice, room: room, via: client)
            let response = try await client.request(
                "PUT", "/chat/rooms/\(room)/messages/\(edited)/", token: alice.token,
                json: ["message_content": "고친 내용 안녕하세요"])
            #expect(response.status == 200)
            try await cluster.database.execute(
                """
                INSERT INTO messages (room_id, sender_id, message_content, message_type)
                VALUES (\(room), \(bob.id), '운영자가 넣은 메시지 psql', 'text')
                """)
            // A psql insert that names a document gets the right one anyway.
            try await cluster.database.execute(
                """
                INSERT INTO messages (room_id, sender_id, message_content, message_type, search_document)
                VALUES (\(room), \(bob.id), '틀린 문서', 'text', 'wrong'::tsvector)
                """)
            try await cluster.database.execute(
                "UPDATE messages SET message_content = 'psql로 고침' WHERE message_id = \(viaAPI)")
            let rows = try await cluster.database.query(
                """
                SELECT message_id, search_document = chat_search_document(message_content), search_document::text
                FROM messages WHERE room_id = \(room) ORDER BY message_id
                """)
            #expect(rows.count == 4)
            for row in rows {
                let (id, same, document) = try row.decode((Int64, Bool, String).self)
                #expect(same, "message \(id): \(document)")
                #expect(!document.isEmpty)
            }
            // And search finds each through it.
            for (query, expected) in [("고친", 1), ("운영자", 1), ("psql", 2), ("철수", 0), ("틀린", 1)] {
                let found = try await client.request(
                    "GET", "/chat/rooms/\(room)/search/?query=\(query.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)",
                    token: alice.token)
                #expect(try found.object().int("total_count") == Int64(expected), "\(query): \(found)")
            }
            await client.close()
        }
    }
}
