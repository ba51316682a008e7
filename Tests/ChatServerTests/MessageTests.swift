import Foundation
import Postgres
import Testing

@Suite struct MessageTests {
    static let messageKeys: Set<String> = [
        "message_id", "room_id", "sender_id", "sender_name", "message_content", "message_type", "file_url",
        "file_name", "file_size", "reply_to_message_id", "is_edited", "is_deleted", "edited_at", "created_at",
        "updated_at",
    ]

    @Test func sendReturnsTheMessageObject() async throws {
        try await withApp { api in
            let a = try await api.makeUser("김철수")
            let b = try await api.makeUser()
            let room = try await api.makeGroup(a, with: [b])
            let content = "안녕하세요! 반갑습니다 😊\n  spaces kept  "
            let sent = try await api.send(a, room, content)
            #expect(sent.status == .created, "\(sent.raw)")
            expectKeys(sent.object, Self.messageKeys)
            #expect(sent.int("room_id") == room)
            #expect(sent.int("sender_id") == a.id)
            #expect(sent["sender_name"] as? String == "김철수")
            #expect(sent["message_content"] as? String == content)
            #expect(sent["message_type"] as? String == "text")
            for key in ["file_url", "file_name", "file_size", "reply_to_message_id", "edited_at"] {
                #expect(sent[key] is NSNull, "\(key)")
            }
            #expect(sent["is_edited"] as? Bool == false)
            #expect(sent["is_deleted"] as? Bool == false)
            expectTimestamp(sent["created_at"])

            // message_type defaults to text; replies must name a message of the same room.
            let reply = try await api.request(
                .post, "/chat/rooms/\(room)/messages", token: b.token,
                json: ["message_content": "답장입니다!", "reply_to_message_id": sent.int("message_id")!])
            #expect(reply.status == .created)
            #expect(reply.int("reply_to_message_id") == sent.int("message_id"))
            let otherRoom = try await api.makeGroup(b, with: [a])
            let crossRoom = try await api.send(b, otherRoom, "x", extra: ["reply_to_message_id": sent.int("message_id")!])
            #expect(crossRoom.status == .unprocessableContent)
            #expect(try await api.send(b, room, "x", extra: ["reply_to_message_id": 9_000_000_000_000]).status == .unprocessableContent)
        }
    }

    @Test func contentValidation() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let invalid: [[String: Any]] = [
                ["message_content": ""], ["message_content": " \n\t "], [:],
                ["message_content": String(repeating: "가", count: 10_001)],
                ["message_content": "x", "message_type": "sticker"],
                ["message_content": "x", "message_type": "image"],
                ["message_content": "nul \u{0} inside"],
                ["message_content": "x", "client_message_id": String(repeating: "c", count: 65)],
                ["message_content": "x", "client_message_id": ""],
                ["message_content": "{\"latitude\": 91, \"longitude\": 0}", "message_type": "location"],
                ["message_content": "not json", "message_type": "location"],
            ]
            for body in invalid {
                let response = try await api.request(.post, "/chat/rooms/\(room)/messages/", token: a.token, json: body)
                #expect(response.status == .unprocessableContent, "\(body) -> \(response.raw)")
                #expect(response.detail != nil)
            }
            let longest = try await api.send(a, room, String(repeating: "가", count: 10_000))
            #expect(longest.status == .created)
            let location = try await api.request(
                .post, "/chat/rooms/\(room)/messages/", token: a.token,
                json: ["message_type": "location", "message_content": "{\"latitude\": 37.5, \"longitude\": 127.0, \"name\": \"서울\"}"])
            #expect(location.status == .created, "\(location.raw)")
            #expect(try await api.request(.get, "/chat/rooms/\(room)/messages/", token: a.token).int("total_count") == 2)
        }
    }

    @Test func clientMessageIDMakesSendsIdempotent() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let first = try await api.send(a, room, "once", extra: ["client_message_id": "msg-1"])
            #expect(first.status == .created)
            #expect(first["client_message_id"] as? String == "msg-1")
            let repeatSend = try await api.send(a, room, "once (retry)", extra: ["client_message_id": "msg-1"])
            #expect(repeatSend.status == .ok)
            #expect(repeatSend.int("message_id") == first.int("message_id"))
            #expect(repeatSend["message_content"] as? String == "once")
            // The same id from another sender is another message.
            let other = try await api.send(b, room, "b's", extra: ["client_message_id": "msg-1"])
            #expect(other.status == .created)
            // Without one, the key is absent from the message object.
            #expect(try await api.send(a, room, "plain").object["client_message_id"] == nil)
        }
    }

    @Test func historyPagesAndCursors() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            var ids: [Int64] = []
            for i in 1...7 { ids.append(try await api.send(i % 2 == 0 ? a : b, room, "m\(i)").int("message_id")!) }
            func messageIDs(_ response: JSONResponse) -> [Int64] {
                response.list("messages").compactMap { ($0["message_id"] as? NSNumber)?.int64Value }
            }
            let base = "/chat/rooms/\(room)/messages/"
            let page1 = try await api.request(.get, "\(base)?size=3", token: a.token)
            expectKeys(page1.object, ["messages", "total_count", "has_more"])
            #expect(messageIDs(page1) == [ids[6], ids[5], ids[4]])
            #expect(page1["has_more"] as? Bool == true)
            #expect(page1.int("total_count") == 7)
            let page3 = try await api.request(.get, "\(base)?size=3&page=3", token: a.token)
            #expect(messageIDs(page3) == [ids[0]])
            #expect(page3["has_more"] as? Bool == false)
            let beyond = try await api.request(.get, "\(base)?size=3&page=99999999999", token: a.token)
            #expect(beyond.status == .ok)
            #expect(messageIDs(beyond).isEmpty)

            let before = try await api.request(.get, "\(base)?before_id=\(ids[3])&size=2", token: a.token)
            #expect(messageIDs(before) == [ids[2], ids[1]])
            #expect(before["has_more"] as? Bool == true)
            let after = try await api.request(.get, "\(base)?after_id=\(ids[3])&size=2", token: a.token)
            #expect(messageIDs(after) == [ids[4], ids[5]])
            #expect(after["has_more"] as? Bool == true)
            let tail = try await api.request(.get, "\(base)?after_id=\(ids[5])", token: a.token)
            #expect(messageIDs(tail) == [ids[6]])
            #expect(tail["has_more"] as? Bool == false)

            for query in ["before_id=5&after_id=1", "page=0", "size=0", "size=101", "before_id=x", "after_id=-1"] {
                let response = try await api.request(.get, "\(base)?\(query)", token: a.token)
                #expect(response.status == .unprocessableContent, "\(query)")
            }
        }
    }

    @Test func editAndDeleteRules() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let id = try #require(try await api.send(a, room, "original").int("message_id"))
            let path = "/chat/rooms/\(room)/messages/\(id)/"

            #expect(try await api.request(.put, path, token: b.token, json: ["message_content": "hijack"]).status == .forbidden)
            #expect(try await api.request(.put, path, token: a.token, json: ["message_content": "  "]).status == .unprocessableContent)
            let edited = try await api.request(.put, path, token: a.token, json: ["message_content": "수정된 메시지입니다"])
            #expect(edited.status == .ok)
            expectKeys(edited.object, Self.messageKeys)
            #expect(edited["message_content"] as? String == "수정된 메시지입니다")
            #expect(edited["is_edited"] as? Bool == true)
            expectTimestamp(edited["edited_at"])
            #expect(
                try await api.request(.put, "/chat/rooms/\(room)/messages/9000000000000/", token: a.token, json: ["message_content": "x"])
                    .status == .notFound)

            #expect(try await api.request(.delete, path, token: b.token).status == .forbidden)
            let deleted = try await api.request(.delete, path, token: a.token)
            #expect(deleted.status == .ok)
            expectKeys(deleted.object, Self.messageKeys)
            #expect(deleted["is_deleted"] as? Bool == true)
            for key in ["message_content", "file_url", "file_name", "file_size"] { #expect(deleted[key] is NSNull) }
            let again = try await api.request(.delete, path, token: a.token)
            #expect(again.status == .ok)
            #expect(again["is_deleted"] as? Bool == true)
            #expect(try await api.request(.put, path, token: a.token, json: ["message_content": "revive"]).status == .badRequest)

            // Deleted messages stay in the history with their content removed.
            let history = try await api.request(.get, "/chat/rooms/\(room)/messages/", token: b.token)
            let entry = try #require(history.list("messages").first)
            #expect(entry["is_deleted"] as? Bool == true)
            #expect(entry["message_content"] is NSNull)
            #expect(history.int("total_count") == 1)

            // A message of another room is 404 on this room's path.
            let other = try await api.makeGroup(a, with: [b])
            #expect(try await api.request(.delete, "/chat/rooms/\(other)/messages/\(id)/", token: a.token).status == .notFound)
        }
    }

    @Test func markRead() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let first = try #require(try await api.send(a, room, "one").int("message_id"))
            try await api.send(a, room, "two")
            try await api.send(a, room, "three")

            let partial = try await api.request(.post, "/chat/rooms/\(room)/read/", token: b.token, json: ["message_id": first])
            #expect(partial.status == .ok, "\(partial.raw)")
            expectKeys(partial.object, ["room_id", "user_id", "last_read_at", "unread_count"])
            #expect(partial.int("unread_count") == 2)
            #expect(partial.int("user_id") == b.id)
            expectTimestamp(partial["last_read_at"])

            let all = try await api.request(.post, "/chat/rooms/\(room)/read", token: b.token)
            #expect(all.int("unread_count") == 0)
            // Reading an older message does not move the position back.
            let back = try await api.request(.post, "/chat/rooms/\(room)/read", token: b.token, json: ["message_id": first])
            #expect(back.int("unread_count") == 0)

            let participants = try await api.request(.get, "/chat/rooms/\(room)/participants", token: a.token)
            let bEntry = participants.list("participants").first { ($0["user_id"] as? NSNumber)?.int64Value == b.id }
            expectTimestamp(bEntry?["last_read_at"])

            #expect(
                try await api.request(.post, "/chat/rooms/\(room)/read", token: b.token, json: ["message_id": 9_000_000_000_000])
                    .status == .unprocessableContent)
            #expect(
                try await api.request(.post, "/chat/rooms/\(room)/read", token: b.token, json: ["message_id": "x"]).status
                    == .unprocessableContent)
        }
    }

    /// One call of `chat_send_messages` answers each message for itself whatever else its batch
    /// holds (rooms out of order, a member who left, a deactivated sender, no such room, a room
    /// another transaction holds) and numbers each room's new messages in input order.
    @Test func oneBatchAnswersEachMessageForItself() async throws {
        let url = try #require(ProcessInfo.processInfo.environment["DATABASE_URL"])
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: url, poolSize: 1))
        defer { Task { await postgres.shutdown() } }
        try await withApp { api in
            let (alice, bob, left, gone) = (
                try await api.makeUser(), try await api.makeUser(), try await api.makeUser(), try await api.makeUser()
            )
            let first = try await api.makeGroup(alice, with: [bob, left, gone])
            let second = try await api.makeGroup(bob, with: [alice])
            let held = try await api.makeGroup(alice, with: [bob])
            _ = try await postgres.execute(
                "UPDATE room_participants SET is_active = false WHERE room_id = \(first) AND user_id = \(left.id)")
            _ = try await postgres.execute("UPDATE users SET is_active = false WHERE user_id = \(gone.id)")
            let holder = try await postgres.openDedicatedConnection()
            _ = try await holder.simpleQuery("BEGIN; SELECT 1 FROM rooms WHERE room_id = \(held) FOR UPDATE")
            let sender = try await postgres.openDedicatedConnection()
            _ = try await sender.simpleQuery("SET chat.announces_own_changes = on")

            let batch: [(room: Int64, sender: Int64, expected: String)] = [
                (second, bob.id, "created"), (first, alice.id, "created"), (held, alice.id, "room_busy"),
                (first, left.id, "not_participant"), (9_000_000_000_000, alice.id, "room_not_found"),
                (first, bob.id, "created"), (first, gone.id, "not_participant"), (second, alice.id, "created"),
            ]
            let nulls = [String?](repeating: nil, count: batch.count)
            let rows = try await sender.query(
                """
                SELECT ord, outcome, message_id, seq
                FROM chat_send_messages(\(batch.map(\.room)), \(batch.map(\.sender)),
                    \(batch.indices.map { "message \($0)" }), \(batch.map { _ in "text" }), \(nulls), \(nulls),
                    \([Int64?](repeating: nil, count: batch.count)), \(nulls),
                    \([Int64?](repeating: nil, count: batch.count)), \(nulls), \(nulls), false, false)
                """
            ).map { try $0.decode((Int, String, Int64?, Int64?).self) }
            _ = try await holder.simpleQuery("ROLLBACK")

            // One answer per message, each naming its message (`ord`, 1-based).
            #expect(rows.map(\.0).sorted() == Array(1...batch.count))
            let answers = Dictionary(
                rows.map { ($0.0 - 1, (outcome: $0.1, id: $0.2, seq: $0.3)) }, uniquingKeysWith: { first, _ in first })
            for (index, send) in batch.enumerated() {
                #expect(answers[index]?.outcome == send.expected, "message \(index)")
                #expect((answers[index]?.id != nil) == (send.expected == "created"), "message \(index)")
            }
            // Within a room, input order is id order and number order, one apart.
            for (earlier, later) in [(1, 5), (0, 7)] {
                let (a, b) = (try #require(answers[earlier]), try #require(answers[later]))
                let (aID, bID, aSeq, bSeq) = (try #require(a.id), try #require(b.id), try #require(a.seq), try #require(b.seq))
                #expect(aID < bID && aSeq + 1 == bSeq)
            }
            let stored = try await postgres.queryRow(
                "SELECT count(*) FROM messages WHERE room_id IN (\(first), \(second), \(held))"
            ).decode(Int.self, column: 0)
            #expect(stored == 4)
            let heads = try await postgres.query(
                "SELECT room_id, last_message_id, last_seq FROM rooms WHERE room_id IN (\(first), \(second)) ORDER BY room_id"
            ).map { try $0.decode((Int64, Int64, Int64).self) }
            // Each room's head is its last new message.
            let expectedHeads = [(first, try #require(answers[5])), (second, try #require(answers[7]))].sorted { $0.0 < $1.0 }
            #expect(heads.map(\.1) == expectedHeads.map { $0.1.id })
            #expect(heads.map(\.2) == expectedHeads.map { $0.1.seq })
        }
    }
}
