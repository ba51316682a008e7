import Foundation
import Testing

@testable import ChatCore
@testable import ChatServer

@Suite struct ChangeNoticeTests {
    /// Payloads are read by `FlatJSON` when it can and by `JSONDecoder` otherwise: both give
    /// the same notices, whoever wrote the payload (this server, the SQL triggers with
    /// PostgreSQL's spacing, an older or newer version).
    @Test(arguments: [
        #"[{"k":"msg","r":1},{"k":"msg","r":2}]"#,
        #"[{"k" : "msg", "r" : 8}, {"k" : "msg", "r" : 9}]"#,
        #"[{"k":"typing","r":6,"u":7,"n":"a\"b\\c \uD83D\uDE00","v":true}]"#,
        #"[{"k":"status","r":6,"u":7,"n":null,"v":null},{"k":"join","r":2}]"#,
        #"[{"k":"msg","r":1,"extra":[1,2]}]"#,
        #"[{"k":"msg","r":1,"new_key":"ignored"}]"#,
        #"[{"k":"future","r":1},{"k":"user_off","r":0,"u":5}]"#,
        #"[{"k":"msg","r":"1"},{"k":"msg","r":2}]"#,
        #"[{"k":"msg","r":1.5},{"k":"msg","r":2}]"#,
        #"[{"k":"typing","r":6,"u":7,"v":"yes"}]"#,
        #"[{"r":1}]"#,
        #"[]"#,
    ])
    func theFastPathReadsAsJSONDecoderDoes(payload: String) throws {
        #expect(try ChangeNotice.decodeBatch(payload) == ChangeNotice.decodeBatchWithFoundation(payload))
    }

    @Test func batchesStayUnderThePayloadLimitAndKeepOrder() throws {
        var notices: [ChangeNotice] = []
        for i in 0..<2000 {
            notices.append(
                .live(roomID: Int64(i), .typing(userID: 42, userName: String(repeating: "김", count: 50), isTyping: i % 3 == 0)))
        }
        let payloads = ChangeNotice.batches(notices).map(\.payload)
        #expect(payloads.count > 1)
        for payload in payloads { #expect(payload.utf8.count < ChangeNotice.maxPayloadBytes) }
        let decoded = try payloads.flatMap(ChangeNotice.decodeBatch)
        #expect(decoded == notices)
    }

    @Test func everyKindSurvivesTheWire() throws {
        let notices: [ChangeNotice] = [
            .roomChanged(roomID: 1), .joined(roomID: 2, userID: 3), .roomCreated(roomID: 4),
            .userDeactivated(userID: 5), .live(roomID: 6, .typing(userID: 7, userName: "a\"b\\c", isTyping: true)),
            .live(roomID: 6, .presence(userID: 7, userName: "박주호", online: false)), .live(roomID: 8, .roomUpdated),
        ]
        #expect(try ChangeNotice.batches(notices).map(\.payload).flatMap(ChangeNotice.decodeBatch) == notices)
    }

    @Test func repeatedWakeUpsAreSentOncePerPayloadButTypingAndPresenceEveryTime() throws {
        let typing = { (on: Bool) in ChangeNotice.live(roomID: 1, .typing(userID: 9, userName: "x", isTyping: on)) }
        let presence = { (on: Bool) in ChangeNotice.live(roomID: 1, .presence(userID: 9, userName: "x", online: on)) }
        let notices: [ChangeNotice] = [
            .roomChanged(roomID: 1), .roomChanged(roomID: 2), typing(true), .roomChanged(roomID: 1), typing(false),
            typing(true), presence(true), presence(false), presence(true), .joined(roomID: 1, userID: 9),
            .joined(roomID: 1, userID: 9),
        ]
        let decoded = try ChangeNotice.batches(notices).map(\.payload).flatMap(ChangeNotice.decodeBatch)
        #expect(
            decoded == [
                .roomChanged(roomID: 1), .roomChanged(roomID: 2), typing(true), typing(false), typing(true),
                presence(true), presence(false), presence(true), .joined(roomID: 1, userID: 9),
            ])
    }

    @Test func triggerAndOlderVersionPayloadsDecode() throws {
        // The shapes sql/0004, 0006, 0008 and 0009 write for changes made outside the servers,
        // and the kinds older versions sent: all but `join` are wake-ups of their room.
        let payload = #"""
            [{"k": "leave", "n": "user7", "r": 8, "u": 7}, {"k": "upd", "r": 8, "m": 3},
             {"k": "del", "r": 8, "m": 3}, {"k": "read", "r": 8, "u": 7, "m": 3, "at": "2026-12-07 10:00:00+00", "c": 0},
             {"k": "join", "r": 8, "u": 7, "n": "user7"}, {"k": "room_upd", "r": 8}, {"k": "user_off", "r": 0, "u": 7}]
            """#
        #expect(
            try ChangeNotice.decodeBatch(payload) == [
                .roomChanged(roomID: 8), .roomChanged(roomID: 8), .roomChanged(roomID: 8), .roomChanged(roomID: 8),
                .joined(roomID: 8, userID: 7), .live(roomID: 8, .roomUpdated), .userDeactivated(userID: 7),
            ])
        // A kind from a newer version, or one missing what it needs, is skipped; the rest of its
        // batch still counts.
        #expect(
            try ChangeNotice.decodeBatch(#"[{"k": "future", "r": 1}, {"k": "join", "r": 1}, {"k": "msg", "r": 2}]"#)
                == [.roomChanged(roomID: 2)])
        #expect(throws: (any Error).self) { try ChangeNotice.decodeBatch("not json") }
    }

    @Test func coalescingDropsOnlyRepeatsAndSupersededOrLiveOnlyNotices() {
        var queue: [ChangeNotice] = []
        for i in 0..<6000 {
            queue.append(.live(roomID: 1, .typing(userID: Int64(i % 3), userName: "u", isTyping: i % 2 == 0)))
            queue.append(.roomChanged(roomID: 2))
        }
        queue.append(.joined(roomID: 1, userID: 5))
        queue.append(.live(roomID: 1, .presence(userID: 5, userName: "x", online: true)))
        queue.append(.roomChanged(roomID: 3))
        queue.append(.roomChanged(roomID: 2))
        let dropped = ChangeNotifier.coalesce(&queue)
        // The latest typing state of each user, one wake-up per room, and every other notice,
        // in their order.
        #expect(dropped == 12_004 - queue.count)
        #expect(queue.count == 3 + 4)
        #expect(
            Array(queue.suffix(4)) == [
                .joined(roomID: 1, userID: 5), .live(roomID: 1, .presence(userID: 5, userName: "x", online: true)),
                .roomChanged(roomID: 3), .roomChanged(roomID: 2),
            ])

        // Past the bound even then, typing goes (live-only); nothing else does.
        var joins = (0..<(ChangeNotifier.maxPending + 10)).map { ChangeNotice.joined(roomID: 1, userID: Int64($0)) }
        joins.append(.live(roomID: 1, .typing(userID: 1, userName: "u", isTyping: true)))
        #expect(ChangeNotifier.coalesce(&joins) == 1)
        #expect(joins.count == ChangeNotifier.maxPending + 10)
    }
}
