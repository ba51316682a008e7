import ChatCore
import Foundation
import Testing

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
}
