@testable import ChatCore
import Foundation
import Testing

@testable import ChatServer

/// `JSONWriter` writes the hottest responses and frames by hand: it must match, byte for byte,
/// what `ChatJSON.encoder()` writes for the same values, so the two can never drift apart.
@Suite struct JSONWriterTests {
    static let texts: [String?] = [
        nil, "", "안녕하세요! 반갑습니다 😊", "quote \" backslash \\ slash / done", "lines\nand\rtabs\tbell\u{7}nul\u{0}",
        "\u{1F}\u{8}\u{C} controls", "emoji 👩‍👩‍👧 and combining é", "{\"json\": [1, 2]}", "\u{2028}\u{2029}",
    ]

    static func messages() -> [Message] {
        var messages: [Message] = []
        for (index, text) in texts.enumerated() {
            let file = index % 2 == 0
            messages.append(
                Message(
                    id: Int64(index + 1) * 7_000_000_000_123, roomID: Int64(index), senderID: Int64.max - Int64(index),
                    senderName: text ?? "김철수", content: text, type: file ? .file : .text,
                    filePath: file ? "0123abcd.png" : nil, fileName: file ? text ?? "사진.png" : nil,
                    fileSize: file ? Int64(index) * 1024 : nil, replyToMessageID: index % 3 == 0 ? nil : 42,
                    clientMessageID: index % 4 == 0 ? nil : text, isEdited: index % 2 == 1, isDeleted: index == 5,
                    editedAt: index % 2 == 1 ? Date(timeIntervalSince1970: 1_767_225_600.123456) : nil,
                    createdAt: Date(timeIntervalSince1970: 1_767_225_600 + Double(index) * 0.000_001),
                    updatedAt: Date(timeIntervalSince1970: 1_800_000_000.5), seq: Int64(index) * 1_000_003 + 1))
        }
        return messages
    }

    static func encoded(_ value: some Encodable) throws -> String {
        String(decoding: try ChatJSON.encoder().encode(value), as: UTF8.self)
    }

    @Test func messageResponsesMatchTheEncoder() throws {
        let files = FileURLs(publicBaseURL: "https://chat.example.com")
        for message in Self.messages() {
            let response = MessageResponse(message, files: files)
            #expect(response.jsonString == (try Self.encoded(response)))
        }
        let list = MessageListResponse(
            messages: Self.messages().map { MessageResponse($0, files: files) }, totalCount: 12, hasMore: true)
        #expect(list.jsonString == (try Self.encoded(list)))
        let empty = MessageListResponse(messages: [], totalCount: 0, hasMore: false)
        #expect(empty.jsonString == (try Self.encoded(empty)))
    }

    @Test func messageFramesMatchTheEncoder() throws {
        let files = FileURLs(publicBaseURL: "")
        for message in Self.messages() {
            let frame = ServerFrame.MessageFrame(message, files: files)
            #expect(ServerFrame.message(message, files: files) == (try Self.encoded(frame)))
        }
    }

    @Test func outputIsValidJSON() throws {
        for message in Self.messages() {
            let text = MessageResponse(message, files: FileURLs(publicBaseURL: "")).jsonString
            let parsed = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            #expect(parsed?["message_content"] as? String == message.content)
        }
    }
}
