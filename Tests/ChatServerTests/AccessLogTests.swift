import Foundation
import Testing

@testable import ChatServer

/// The access log's lines (`AccessLog`): the format of the process's other log lines, every
/// field, and a client-chosen path that cannot break a line or forge a field.
@Suite struct AccessLogTests {
    let entry = AccessLog.Entry(
        method: "POST", route: "/chat/rooms/{room_id}/messages", path: "/chat/rooms/7/messages/", status: 201,
        duration: .microseconds(1500), requestID: "req-1", userID: 42)
    let time = Date(timeIntervalSince1970: 1_765_000_000.25)

    @Test func jsonLinesCarryEveryFieldAsStrings() throws {
        let line = AccessLog(format: .json).render(entry, at: time)
        #expect(line.last == UInt8(ascii: "\n") && line.filter { $0 == UInt8(ascii: "\n") }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: String])
        #expect(
            object == [
                "time": "2025-12-06T05:46:40.250000Z", "level": "info", "logger": "chat-server", "message": "request",
                "source": "ChatServer", "chat.user_id": "42", "hb.request.id": "req-1", "http.duration_ms": "1.5",
                "http.method": "POST", "http.path": "/chat/rooms/7/messages/", "http.route": "/chat/rooms/{room_id}/messages",
                "http.status": "201",
            ])
    }

    @Test func textLinesLookLikeTheOtherLogLines() {
        var anonymous = entry
        anonymous.userID = nil
        let line = String(decoding: AccessLog(format: .text).render(anonymous, at: time), as: UTF8.self)
        #expect(
            line
                == "2025-12-06T05:46:40.250000Z info chat-server : hb.request.id=req-1 http.duration_ms=1.5 http.method=POST "
                + "http.path=/chat/rooms/7/messages/ http.route=/chat/rooms/{room_id}/messages http.status=201 [ChatServer] request\n")
    }

    @Test func aHostilePathStaysInsideItsField() throws {
        var hostile = entry
        hostile.path = "/a\"b\\c\n{\"forged\":\"x\"}\u{1}"
        let line = AccessLog(format: .json).render(hostile, at: time)
        #expect(line.filter { $0 == UInt8(ascii: "\n") }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: String])
        #expect(object["http.path"] == hostile.path && object["forged"] == nil)
    }
}
