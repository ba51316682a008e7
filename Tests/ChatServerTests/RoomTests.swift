import Foundation
import Testing

@Suite struct RoomTests {
    static let summaryKeys: Set<String> = [
        "room_id", "room_name", "room_type", "created_by", "is_active", "created_at", "updated_at",
        "participant_count", "last_message", "unread_count",
    ]

    @Test func createDirectRoomAndDeduplicate() async throws {
        try await withApp { api in
            let a = try await api.makeUser("박주호")
            let b = try await api.makeUser("김철수")
            let created = try await api.request(
                .post, "/chat/rooms/", token: a.token,
                json: ["room_type": "direct", "participant_ids": [b.id, b.id, a.id]])
            #expect(created.status == .created, "\(created.raw)")
            expectKeys(created.object, Self.summaryKeys)
            #expect(created["room_name"] as? String == "김철수")
            #expect(created["room_type"] as? String == "direct")
            #expect(created.int("created_by") == a.id)
            #expect(created["is_active"] as? Bool == true)
            #expect(created.int("participant_count") == 2)
            #expect(created["last_message"] is NSNull)
            #expect(created.int("unread_count") == 0)
            expectTimestamp(created["created_at"])
            expectTimestamp(created["updated_at"])

            // The same pair again, from either side: the existing room with 200.
            let again = try await api.request(
                .post, "/chat/rooms", token: b.token, json: ["room_type": "direct", "participant_ids": [a.id]])
            #expect(again.status == .ok)
            #expect(again.int("room_id") == created.int("room_id"))
        }
    }

    @Test func createValidation() async throws {
        try await withApp { api in
            let (a, b, c) = (try await api.makeUser(), try await api.makeUser(), try await api.makeUser())
            let unknown = Int64.random(in: 5_000_000_000_000...6_000_000_000_000)
            let cases: [[String: Any]] = [
                ["room_type": "direct", "participant_ids": [b.id, c.id]],
                ["room_type": "direct", "participant_ids": [a.id]],
                ["room_type": "direct"],
                ["room_type": "group", "participant_ids": [b.id]],
                ["room_type": "group", "room_name": "  ", "participant_ids": [b.id]],
                ["room_type": "group", "room_name": String(repeating: "x", count: 101), "participant_ids": [b.id]],
                ["room_type": "group", "room_name": "g", "participant_ids": []],
                ["room_type": "group", "room_name": "g", "participant_ids": [b.id], "room_description": String(repeating: "d", count: 501)],
                ["room_type": "channel", "room_name": "g", "participant_ids": [b.id]],
                ["room_name": "g", "participant_ids": [b.id]],
                ["room_type": "group", "room_name": "g", "participant_ids": ["\(b.id)"]],
                ["room_type": "group", "room_name": "g", "participant_ids": Array(1...101).map { Int64($0) + unknown }],
            ]
            for body in cases {
                let response = try await api.request(.post, "/chat/rooms/", token: a.token, json: body)
                #expect(response.status == .unprocessableContent, "\(body) -> \(response.raw)")
                #expect(response.detail != nil)
            }
            let unknownIDs = try await api.request(
                .post, "/chat/rooms/", token: a.token,
                json: ["room_type": "group", "room_name": "g", "participant_ids": [b.id, unknown]])
            #expect(unknownIDs.status == .unprocessableContent)
            #expect(unknownIDs.detail?.contains(String(unknown)) == true)
            // None of the failures left a room behind.
            #expect(try await api.request(.get, "/chat/rooms/", token: a.token).int("total_count") == 0)
        }
    }

    @Test func listShowsCountsLastMessageAndActivityOrder() async throws {
        try await withApp { api in
            let (a, b, c) = (try await api.makeUser(), try await api.makeUser(), try await api.makeUser())
            let first = try await api.makeGroup(a, with: [b, c], name: "first")
            let second = try await api.makeDirect(a, b)
            try await api.send(b, first, "older")
            try await api.send(b, first, "hello 😊")
            try await api.send(a, first, "mine")
            let deleted = try await api.send(b, first, "gone")
            #expect(
                try await api.request(
                    .delete, "/chat/rooms/\(first)/messages/\(deleted.int("message_id")!)/", token: b.token
                ).status == .ok)

            var list = try await api.request(.get, "/chat/rooms/", token: a.token)
            #expect(list.status == .ok)
            expectKeys(list.object, ["rooms", "total_count"])
            #expect(list.int("total_count") == 2)
            var rooms = list.list("rooms")
            #expect(rooms.map { ($0["room_id"] as? NSNumber)?.int64Value } == [first, second])
            expectKeys(rooms[0], Self.summaryKeys)
            #expect((rooms[0]["participant_count"] as? NSNumber) == 3)
            #expect(rooms[0]["last_message"] as? String == "mine")  // the deleted one is skipped
            #expect((rooms[0]["unread_count"] as? NSNumber) == 2)  // b's two live messages
            #expect(rooms[1]["last_message"] is NSNull)

            // Activity moves the direct room first; reading clears a's unread count.
            try await api.send(b, second, "ping")
            #expect(try await api.request(.post, "/chat/rooms/\(first)/read/", token: a.token).status == .ok)
            list = try await api.request(.get, "/chat/rooms", token: a.token)
            rooms = list.list("rooms")
            #expect(rooms.map { ($0["room_id"] as? NSNumber)?.int64Value } == [second, first])
            #expect((rooms[0]["unread_count"] as? NSNumber) == 1)
            #expect((rooms[1]["unread_count"] as? NSNumber) == 0)

            // Pagination.
            let page2 = try await api.request(.get, "/chat/rooms/?page=2&size=1", token: a.token)
            #expect(page2.list("rooms").map { ($0["room_id"] as? NSNumber)?.int64Value } == [first])
            #expect(page2.int("total_count") == 2)
            for query in ["size=0", "size=501", "page=0", "page=x", "size=-1"] {
                #expect(try await api.request(.get, "/chat/rooms/?\(query)", token: a.token).status == .unprocessableContent)
            }
            // c never sees a's direct room.
            #expect(try await api.request(.get, "/chat/rooms/", token: c.token).int("total_count") == 1)
        }
    }

    @Test func detailAndAccessRules() async throws {
        try await withApp { api in
            let (a, b, outsider) = (try await api.makeUser(), try await api.makeUser(), try await api.makeUser())
            let created = try await api.request(
                .post, "/chat/rooms/", token: a.token,
                json: ["room_type": "group", "room_name": "스터디", "room_description": "설명", "participant_ids": [b.id]])
            let room = try #require(created.int("room_id"))
            let detail = try await api.request(.get, "/chat/rooms/\(room)/", token: b.token)
            #expect(detail.status == .ok)
            expectKeys(
                detail.object,
                ["room_id", "room_name", "room_type", "room_description", "max_participants", "created_by", "is_active",
                 "created_at", "updated_at", "seq"])
            #expect(detail["room_name"] as? String == "스터디")
            // Founding members are not changes: a new room starts at seq 0.
            #expect(detail.int("seq") == 0)
            #expect(detail["room_description"] as? String == "설명")
            #expect(detail.int("max_participants") == 100)

            let missing = Int64.random(in: 8_000_000_000_000...9_000_000_000_000)
            for path in ["", "participants/", "messages/"] {
                let forbidden = try await api.request(.get, "/chat/rooms/\(room)/\(path)", token: outsider.token)
                #expect(forbidden.status == .forbidden, "\(path)")
                #expect(forbidden.detail != nil)
                #expect(try await api.request(.get, "/chat/rooms/\(missing)/\(path)", token: a.token).status == .notFound)
            }
            // Writes check access before looking at the body.
            let post = try await api.request(.post, "/chat/rooms/\(room)/messages/", token: outsider.token, json: [:])
            #expect(post.status == .forbidden)
            #expect(try await api.request(.post, "/chat/rooms/\(missing)/read/", token: a.token).status == .notFound)
        }
    }

    @Test func membershipChanges() async throws {
        try await withApp { api in
            let (a, b, c, d) = (
                try await api.makeUser(), try await api.makeUser("참가자"), try await api.makeUser(), try await api.makeUser()
            )
            let room = try await api.makeGroup(a, with: [b])
            let participants = try await api.request(.get, "/chat/rooms/\(room)/participants/", token: a.token)
            #expect(participants.status == .ok)
            expectKeys(participants.object, ["participants", "total_count"])
            let first = try #require(participants.list("participants").first)
            expectKeys(first, ["id", "room_id", "user_id", "user_name", "joined_at", "last_read_at", "is_active"])
            #expect(first["last_read_at"] is NSNull)
            #expect(participants.int("total_count") == 2)

            // Any participant may add; unknown ids are 422; direct rooms cannot grow.
            let added = try await api.request(
                .post, "/chat/rooms/\(room)/participants/", token: b.token, json: ["user_ids": [c.id, c.id]])
            #expect(added.status == .ok, "\(added.raw)")
            #expect(added.int("total_count") == 3)
            let unknown = try await api.request(
                .post, "/chat/rooms/\(room)/participants/", token: b.token, json: ["user_ids": [Int64(9_100_000_000_000)]])
            #expect(unknown.status == .unprocessableContent)
            let direct = try await api.makeDirect(a, d)
            #expect(
                try await api.request(.post, "/chat/rooms/\(direct)/participants/", token: a.token, json: ["user_ids": [c.id]])
                    .status == .badRequest)

            // Only the creator removes others; anyone may leave.
            #expect(try await api.request(.delete, "/chat/rooms/\(room)/participants/\(c.id)/", token: b.token).status == .forbidden)
            let removed = try await api.request(.delete, "/chat/rooms/\(room)/participants/\(c.id)", token: a.token)
            #expect(removed.status == .ok)
            #expect(!removed.list("participants").contains { ($0["user_id"] as? NSNumber)?.int64Value == c.id })
            #expect(try await api.request(.get, "/chat/rooms/\(room)/", token: c.token).status == .forbidden)
            #expect(try await api.request(.delete, "/chat/rooms/\(room)/participants/\(c.id)/", token: a.token).status == .notFound)
            let left = try await api.request(.delete, "/chat/rooms/\(room)/participants/\(b.id)/", token: b.token)
            #expect(left.status == .ok)
            #expect(left.int("total_count") == 1)
            #expect(try await api.request(.get, "/chat/rooms/", token: b.token).int("total_count") == 0)

            // Re-adding someone who left makes them active again.
            let readded = try await api.request(
                .post, "/chat/rooms/\(room)/participants", token: a.token, json: ["user_ids": [b.id]])
            #expect(readded.int("total_count") == 2)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/", token: b.token).status == .ok)
        }
    }

    @Test func maxParticipantsIsSetAtCreation() async throws {
        try await withApp { api in
            let owner = try await api.makeUser()
            var others: [TestUser] = []
            for _ in 0..<150 { others.append(try await api.makeUser()) }
            func create(_ extra: [String: Any], with members: [TestUser]) async throws -> JSONResponse {
                var body: [String: Any] = ["room_type": "group", "room_name": "큰 방", "participant_ids": members.map(\.id)]
                body.merge(extra) { $1 }
                return try await api.request(.post, "/chat/rooms/", token: owner.token, json: body)
            }
            // Past the default of 100 only with a larger max_participants.
            #expect(try await create([:], with: others).status == .unprocessableContent)
            let big = try await create(["max_participants": 1000], with: others)
            #expect(big.status == .created, "\(big.raw)")
            #expect(big.int("participant_count") == 151)
            let bigID = try #require(big.int("room_id"))
            let detail = try await api.request(.get, "/chat/rooms/\(bigID)/", token: others[149].token)
            #expect(detail.int("max_participants") == 1000)
            let participants = try await api.request(.get, "/chat/rooms/\(bigID)/participants/", token: owner.token)
            #expect(participants.int("total_count") == 151)

            // Out of range, below the participants it names, or not an integer: 422.
            for bad: Any in [1, 0, -5, 10_001, "100", 2.5] {
                let response = try await create(["max_participants": bad], with: [others[0]])
                #expect(response.status == .unprocessableContent, "\(bad): \(response.raw)")
                #expect(response.detail != nil)
            }
            #expect(try await create(["max_participants": 2], with: Array(others.prefix(2))).status == .unprocessableContent)

            // A small room is full at its limit.
            let small = try await create(["max_participants": 3], with: Array(others.prefix(2)))
            #expect(small.status == .created)
            let smallID = try #require(small.int("room_id"))
            let add = try await api.request(
                .post, "/chat/rooms/\(smallID)/participants/", token: owner.token, json: ["user_ids": [others[2].id]])
            #expect(add.status == .badRequest)
            // Direct rooms ignore it.
            let direct = try await api.request(
                .post, "/chat/rooms/", token: owner.token,
                json: ["room_type": "direct", "participant_ids": [others[3].id], "max_participants": 1])
            #expect(direct.status == .created, "\(direct.raw)")
        }
    }

    @Test func anUnnamedDirectRoomShowsEachParticipantTheOther() async throws {
        try await withApp { api in
            let a = try await api.makeUser("박주호")
            let b = try await api.makeUser("김철수")
            let room = try await api.makeDirect(a, b)
            for (viewer, expected) in [(a, "김철수"), (b, "박주호")] {
                let list = try await api.request(.get, "/chat/rooms/", token: viewer.token)
                let entry = list.list("rooms").first { ($0["room_id"] as? NSNumber)?.int64Value == room }
                #expect(entry?["room_name"] as? String == expected)
                let detail = try await api.request(.get, "/chat/rooms/\(room)/", token: viewer.token)
                #expect(detail["room_name"] as? String == expected)
            }
            // A renamed user shows under the new name; a direct room given a name keeps it for both.
            let renamed = try await TestAPI.token(sub: String(b.id), name: "김철수2")
            #expect(try await api.request(.get, "/auth/me", token: renamed).status == .ok)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/", token: a.token)["room_name"] as? String == "김철수2")
            let c = try await api.makeUser("이영희")
            let named = try await api.request(
                .post, "/chat/rooms/", token: a.token,
                json: ["room_type": "direct", "room_name": "우리 방", "participant_ids": [c.id]])
            let namedID = try #require(named.int("room_id"))
            for viewer in [a, c] {
                #expect(try await api.request(.get, "/chat/rooms/\(namedID)/", token: viewer.token)["room_name"] as? String == "우리 방")
            }
        }
    }
}

@Suite struct DirectRoomRemovalTests {
    /// Issue 12.12: a user removed from a direct room cannot undo it by creating the room
    /// again; the user who removed them can, and someone who left on their own can come back.
    @Test func aRemovalSticksUntilTheRemoverUndoesIt() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser("제거자"), try await api.makeUser("제거됨"))
            let created = try await api.request(.post, "/chat/rooms/", token: a.token, json: ["room_type": "direct", "participant_ids": [b.id]])
            let room = try #require(created.int("room_id"))
            #expect(try await api.request(.delete, "/chat/rooms/\(room)/participants/\(b.id)/", token: a.token).status == .ok)

            let undo = try await api.request(.post, "/chat/rooms/", token: b.token, json: ["room_type": "direct", "participant_ids": [a.id]])
            #expect(undo.status == .forbidden, "\(undo.raw)")
            #expect(undo.detail != nil)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/messages/", token: b.token).status == .forbidden)

            // The remover brings them back.
            let readd = try await api.request(.post, "/chat/rooms/", token: a.token, json: ["room_type": "direct", "participant_ids": [b.id]])
            #expect(readd.status == .ok)
            #expect(readd.int("participant_count") == 2)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/messages/", token: b.token).status == .ok)

            // Leaving on one's own is not a removal: creating the room again rejoins.
            #expect(try await api.request(.delete, "/chat/rooms/\(room)/participants/\(b.id)/", token: b.token).status == .ok)
            let back = try await api.request(.post, "/chat/rooms/", token: b.token, json: ["room_type": "direct", "participant_ids": [a.id]])
            #expect(back.status == .ok, "\(back.raw)")
            #expect(back.int("participant_count") == 2)
        }
    }
}
