import ChatTestKit
import Foundation
import Testing

/// The per-room change sequence (API.md, "Change sequence"): every change frame carries
/// `seq`, and a socket opened with `last_seq` gets every change after it, then live events.
@Suite(.serialized) struct ChangeSequenceTests {
    struct Change: Equatable, CustomStringConvertible {
        var type: String
        var seq: Int64
        var description: String { "\(type)#\(seq)" }
    }

    /// The `seq`-carrying frames of a socket until one numbered `seq` (or above) arrived;
    /// other frames (typing, presence, pong) are skipped.
    static func changes(on socket: WebSocketTestClient, through seq: Int64) async throws -> [Change] {
        var changes: [Change] = []
        while changes.last.map({ $0.seq < seq }) ?? true {
            let frame = try await socket.nextObject(timeout: .seconds(30))
            guard let number = frame.int("seq") else { continue }
            changes.append(Change(type: frame.string("type") ?? "?", seq: number))
        }
        return changes
    }

    static func roomSeq(_ cluster: Cluster, room: Int64, as user: Chatter) async throws -> Int64 {
        let client = cluster.http(cluster.a)
        defer { Task { await client.close() } }
        let detail = try await client.request("GET", "/chat/rooms/\(room)/", token: user.token)
        return try #require(try detail.object().int("seq"))
    }

    /// One change of every kind, made over REST on instance A and with psql.
    static func makeOneOfEach(_ cluster: Cluster, room: Int64, alice: Chatter, bob: Chatter, carol: Chatter) async throws {
        let http = cluster.http(cluster.a)
        defer { Task { await http.close() } }
        let first = try await cluster.post("first", by: alice, room: room, via: http)
        let second = try await cluster.post("second", by: bob, room: room, via: http)
        #expect(
            try await http.request(
                "PUT", "/chat/rooms/\(room)/messages/\(first)/", token: alice.token, json: ["message_content": "first, edited"]
            ).status == 200)
        #expect(try await http.request("DELETE", "/chat/rooms/\(room)/messages/\(second)/", token: bob.token).status == 200)
        #expect(try await http.request("POST", "/chat/rooms/\(room)/read/", token: bob.token, json: [String: Int]()).status == 200)
        #expect(
            try await http.request("POST", "/chat/rooms/\(room)/participants/", token: alice.token, json: ["user_ids": [carol.id]])
                .status == 200)
        #expect(try await http.request("DELETE", "/chat/rooms/\(room)/participants/\(carol.id)/", token: alice.token).status == 200)
        // The same kinds made with SQL are changes too.
        try await cluster.database.execute(
            "UPDATE messages SET message_content = 'edited with psql' WHERE message_id = \(first)")
        try await cluster.database.execute(
            "INSERT INTO messages (room_id, sender_id, message_content, message_type) VALUES (\(room), \(bob.id), 'psql', 'text')")
    }

    static let oneOfEach = [
        "message", "message", "message_updated", "message_deleted", "message_read", "participant_joined",
        "participant_left", "message_updated", "message",
    ]

    @Test func everyKindOfChangeIsNumberedAndCaughtUpWithLastSeq() async throws {
        try await withCluster(2) { cluster in
            let (alice, bob, carol) = (try await cluster.makeUser(), try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let start = try await Self.roomSeq(cluster, room: room, as: alice)
            #expect(start == 0)
            // Live, on the other instance.
            let live = try await cluster.socket(cluster.b, room: room, as: alice)
            try await live.ready()
            try await Self.makeOneOfEach(cluster, room: room, alice: alice, bob: bob, carol: carol)
            let end = try await Self.roomSeq(cluster, room: room, as: alice)
            let seen = try await Self.changes(on: live, through: end)
            #expect(seen.map(\.type) == Self.oneOfEach)
            #expect(seen.map(\.seq) == Array(1...end), "numbers strictly increasing, none skipped: \(seen)")
            // A socket opened with last_seq gets the same frames, then live events.
            var expected = seen
            for after in [start, 3] {
                let resumed = try await cluster.socket(cluster.b, room: room, as: alice, query: "&last_seq=\(after)")
                let head = expected.last!.seq
                #expect(try await Self.changes(on: resumed, through: head) == Array(expected.drop { $0.seq <= after }))
                let next = try await cluster.post("after the catch-up", by: bob, room: room, via: cluster.http(cluster.a))
                let frame = try await resumed.next(type: "message")
                #expect(frame.int("message_id") == next && frame.int("seq") == head + 1)
                expected.append(Change(type: "message", seq: head + 1))
                try await resumed.send(text: #"{"type":"ping"}"#)
                _ = try await resumed.next(type: "pong")
                #expect(!resumed.takeSkipped().contains { if case .text(let t) = $0 { t.contains(#""seq""#) } else { false } })
                try await resumed.close()
            }
            // The catch-up frames are the live frames: the same message, edited, as now.
            let replay = try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_seq=\(start)")
            let firstFrame = try await replay.next(type: "message")
            #expect(firstFrame.string("content") == "edited with psql" && firstFrame.int("seq") == 1)
            let edit = try await replay.next(type: "message_updated")
            #expect(edit.int("seq") == 3 && edit.int("room_id") == room && edit.int("message_id") == firstFrame.int("message_id"))
            try await replay.close()
            try await live.close()
        }
    }

    @Test func aCursorOutsideTheWindowGetsResyncRequiredThenLiveEvents() async throws {
        try await withCluster(1) { cluster in
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let http = cluster.http(cluster.a)
            defer { Task { await http.close() } }
            for i in 0..<3 { try await cluster.post("m\(i)", by: alice, room: room, via: http) }
            #expect(try await http.request("POST", "/chat/rooms/\(room)/read/", token: bob.token, json: [String: Int]()).status == 200)
            let head = try await Self.roomSeq(cluster, room: room, as: alice)
            #expect(head == 4)
            // Ahead of the room, or not a number.
            let ahead = try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_seq=\(head + 1)")
            #expect(try await ahead.nextObject().string("type") == "resync_required")
            let id = try await cluster.post("live", by: alice, room: room, via: http)
            let frame = try await ahead.next(type: "message")
            #expect(frame.int("message_id") == id && frame.int("seq") == head + 1)
            try await ahead.close()
            let bad = try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_seq=abc")
            #expect(try await bad.closeEvent().code == 4400)
            // The read mark ages out of the kept window: pruned (as the retention job does).
            try await cluster.database.execute(
                "UPDATE room_changes SET changed_at = now() - interval '2 days' WHERE room_id = \(room)")
            try await cluster.database.execute("SELECT chat_prune_changes(now() - interval '1 day')")
            let floor = try await cluster.database.queryRow(
                "SELECT seq_floor FROM room_change_floors WHERE room_id = \(room)"
            ).decode(Int64.self, column: 0)
            #expect(floor == 4)
            let stale = try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_seq=2")
            let first = try await stale.nextObject()
            #expect(first.string("type") == "resync_required" && first.int("room_id") == room)
            let after = try await cluster.post("after resync", by: alice, room: room, via: http)
            #expect(try await stale.next(type: "message").int("message_id") == after)
            try await stale.close()
            // From the floor on, replay still works.
            let fresh = try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_seq=\(floor)")
            #expect(try await Self.changes(on: fresh, through: floor + 2).map(\.type) == ["message", "message"])
            try await fresh.close()
        }
    }

    @Test func noChangeIsLostAcrossAListenerKillOrAnInstanceKill() async throws {
        try await withCluster(2) { cluster in
            let (alice, bob, carol) = (try await cluster.makeUser(), try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let live = try await cluster.socket(cluster.b, room: room, as: alice)
            try await live.ready()
            // B's listener dies while changes are made on A: B reconnects and reads the log.
            let maker = Task { try await Self.makeOneOfEach(cluster, room: room, alice: alice, bob: bob, carol: carol) }
            for _ in 0..<2 {
                _ = try await cluster.database.query(
                    """
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE application_name = \(cluster.applicationName(cluster.b)) AND query LIKE 'LISTEN%'
                    """)
                try await Task.sleep(for: .milliseconds(100))
            }
            try await maker.value
            let end = try await Self.roomSeq(cluster, room: room, as: alice)
            let seen = try await Self.changes(on: live, through: end)
            #expect(seen.map(\.type) == Self.oneOfEach && seen.map(\.seq) == Array(1...end))
            // B dies; changes go on; the client resumes on A from the last number it saw.
            await cluster.b.kill()
            live.abort()
            try await Self.makeOneOfEach(cluster, room: room, alice: alice, bob: bob, carol: carol)
            let resumed = try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_seq=\(end)")
            let newEnd = try await Self.roomSeq(cluster, room: room, as: alice)
            let caughtUp = try await Self.changes(on: resumed, through: newEnd)
            #expect(caughtUp.map(\.type) == Self.oneOfEach && caughtUp.map(\.seq) == Array((end + 1)...newEnd))
            try await resumed.close()
        }
    }
}
