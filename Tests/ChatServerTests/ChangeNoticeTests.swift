import ChatCore
import Foundation
import Testing

@testable import ChatServer

@Suite struct ChangeNoticeTests {
    @Test func batchesStayUnderThePayloadLimitAndKeepOrder() throws {
        var notices: [ChangeNotice] = []
        for i in 0..<2000 {
            notices.append(
                ChangeNotice(.typing, roomID: Int64(i), userID: 42, userName: String(repeating: "김", count: 50), flag: true))
        }
        let payloads = ChangeNotice.batches(notices).map(\.payload)
        #expect(payloads.count > 1)
        for payload in payloads { #expect(payload.utf8.count < ChangeNotice.maxPayloadBytes) }
        let decoded = try payloads.flatMap(ChangeNotice.decodeBatch)
        #expect(decoded == notices)
    }

    @Test func repeatedMessageWakeUpsOfARoomAreSentOncePerPayload() throws {
        let notices = [
            ChangeNotice(.message, roomID: 1), ChangeNotice(.message, roomID: 2), ChangeNotice(.message, roomID: 1),
            ChangeNotice(.deleted, roomID: 1, messageID: 9), ChangeNotice(.message, roomID: 1),
        ]
        let decoded = try ChangeNotice.batches(notices).map(\.payload).flatMap(ChangeNotice.decodeBatch)
        #expect(decoded.map(\.kind) == [.message, .message, .deleted])
        #expect(decoded.map(\.roomID) == [1, 2, 1])
    }

    @Test func readNoticesKeepMicrosecondTimestamps() throws {
        let at = Date(timeIntervalSince1970: 1_764_000_000.123456)
        let notice = ChangeNotice(
            .read, roomID: 3, messageID: 77, userID: 5, userName: "박주호", at: at, count: 2, receipts: true)
        let decoded = try ChangeNotice.batches([notice]).map(\.payload).flatMap(ChangeNotice.decodeBatch)
        #expect(decoded.count == 1)
        #expect(abs(decoded[0].at!.timeIntervalSince(at)) < 0.000_001)
        #expect(decoded[0].userName == "박주호" && decoded[0].count == 2 && decoded[0].messageID == 77)
    }

    @Test func triggerPayloadsDecode() throws {
        // The shape sql/0004_realtime.sql writes for changes made outside the servers.
        let payload = #"[{"k": "leave", "n": "user7", "r": 8, "u": 7}]"#
        #expect(try ChangeNotice.decodeBatch(payload) == [ChangeNotice(.left, roomID: 8, userID: 7, userName: "user7")])
        // A kind from a newer version is skipped; the rest of its batch still counts.
        #expect(try ChangeNotice.decodeBatch(#"[{"k": "future", "r": 1}, {"k": "msg", "r": 2}]"#) == [ChangeNotice(.message, roomID: 2)])
        #expect(throws: (any Error).self) { try ChangeNotice.decodeBatch("not json") }
    }

    @Test func coalescingDropsOnlySupersededOrLiveOnlyNotices() {
        var queue: [ChangeNotice] = []
        for i in 0..<6000 {
            queue.append(ChangeNotice(.typing, roomID: 1, userID: Int64(i % 3), flag: i % 2 == 0))
            queue.append(ChangeNotice(.read, roomID: 2, messageID: Int64(i), userID: 7))
        }
        queue.append(ChangeNotice(.deleted, roomID: 1, messageID: 99))
        queue.append(ChangeNotice(.updated, roomID: 1, messageID: 98))
        queue.append(ChangeNotice(.left, roomID: 2, userID: 5, userName: "x"))
        queue.append(ChangeNotice(.read, roomID: 2, messageID: 7000, userID: 7))
        let dropped = ChangeNotifier.coalesce(&queue)
        // The latest typing state of each user, the latest read mark, and every edit, delete
        // and membership change, in their order.
        #expect(dropped == 12_004 - queue.count)
        #expect(queue.filter { $0.kind == .typing }.count == 3)
        #expect(queue.filter { $0.kind == .read }.map(\.messageID) == [7000])
        #expect(queue.filter { [.deleted, .updated, .left].contains($0.kind) }.map(\.kind) == [.deleted, .updated, .left])
        #expect(queue.last?.kind == .read)

        // Past the bound even then, typing goes (live-only); nothing else does.
        var edits = (0..<(ChangeNotifier.maxPending + 10)).map { ChangeNotice(.updated, roomID: 1, messageID: Int64($0)) }
        edits.append(ChangeNotice(.typing, roomID: 1, userID: 1, flag: true))
        #expect(ChangeNotifier.coalesce(&edits) == 1)
        #expect(edits.count == ChangeNotifier.maxPending + 10)
        #expect(edits.allSatisfy { $0.kind == .updated })
    }
}
