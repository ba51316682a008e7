import ChatCore
import Foundation

// The JSON frames of the WebSocket protocol (API.md, "Real-time: WebSocket").

/// A frame from the client. Which fields matter depends on `type`.
struct ClientFrame: Decodable, Sendable {
    var type: String
    var content: String?
    var messageType: String?
    var replyToMessageId: Int64?
    var clientMessageId: String?
    var isTyping: Bool?
    var messageId: Int64?
}

/// Frames from the server, encoded once and shared by every socket that receives them.
enum ServerFrame {
    static func encode(_ value: some Encodable) -> String {
        // Every frame is made of plain values; encoding cannot fail.
        String(decoding: (try? ChatJSON.encoder().encode(value)) ?? Data("{}".utf8), as: UTF8.self)
    }

    static func message(_ message: Message, files: FileURLs) -> String {
        MessageFrame(message, files: files).jsonString
    }

    /// `message_updated` / `message_deleted`: the message object as REST returns it, and the
    /// change's number.
    static func messageChange(_ type: String, _ message: Message, seq: Int64, files: FileURLs) -> String {
        encode(Typed(type: type, seq: seq, body: MessageResponse(message, files: files)))
    }

    /// A `last_seq` the room can no longer replay (older than the kept window, or ahead of
    /// the room): the client reloads history over REST; the socket is live from here.
    static func resyncRequired(_ roomID: Int64) -> String {
        encode(ResyncRequired(roomId: roomID))
    }

    struct ResyncRequired: Encodable {
        var type = "resync_required"
        var roomId: Int64
    }

    static func roomCreated(_ summary: RoomSummary) -> String {
        encode(Typed(type: "room_created", body: RoomSummaryResponse(summary)))
    }

    static func roomUpdated(_ summary: RoomSummary) -> String {
        encode(Typed(type: "room_updated", body: RoomSummaryResponse(summary)))
    }

    /// On the user stream: the user left the room or was removed from it.
    static func roomRemoved(_ roomID: Int64) -> String {
        encode(RoomRemoved(roomId: roomID))
    }

    struct RoomRemoved: Encodable {
        var type = "room_removed"
        var roomId: Int64
    }

    static func error(_ detail: String, clientMessageID: String? = nil) -> String {
        encode(ErrorFrame(detail: detail, clientMessageId: clientMessageID))
    }

    static let pong = encode(["type": "pong"])

    struct MessageFrame: Encodable, JSONWritable {
        var type = "message"
        var messageId: Int64
        var roomId: Int64
        var senderId: Int64
        var senderName: String
        @Null var content: String?
        var messageType: MessageType
        @Null var fileUrl: String?
        @Null var fileName: String?
        @Null var fileSize: Int64?
        var timestamp: Date
        @Null var replyToMessageId: Int64?
        @Null var clientMessageId: String?
        var isEdited: Bool
        var isDeleted: Bool
        var seq: Int64

        init(_ message: Message, files: FileURLs) {
            messageId = message.id
            roomId = message.roomID
            senderId = message.senderID
            senderName = message.senderName
            content = message.content
            messageType = message.type
            fileUrl = message.filePath.map(files.url(forPath:))
            fileName = message.fileName
            fileSize = message.fileSize
            timestamp = message.createdAt
            replyToMessageId = message.replyToMessageID
            clientMessageId = message.clientMessageID
            isEdited = message.isEdited
            isDeleted = message.isDeleted
            seq = message.seq
        }

        func write(to json: inout JSONWriter) {
            json.beginObject()
            json.key("client_message_id")
            json.value(clientMessageId)
            json.key("content")
            json.value(content)
            json.key("file_name")
            json.value(fileName)
            json.key("file_size")
            json.value(fileSize)
            json.key("file_url")
            json.value(fileUrl)
            json.key("is_deleted")
            json.value(isDeleted)
            json.key("is_edited")
            json.value(isEdited)
            json.key("message_id")
            json.value(messageId)
            json.key("message_type")
            json.value(messageType.rawValue)
            json.key("reply_to_message_id")
            json.value(replyToMessageId)
            json.key("room_id")
            json.value(roomId)
            json.key("sender_id")
            json.value(senderId)
            json.key("sender_name")
            json.value(senderName)
            json.key("seq")
            json.value(seq)
            json.key("timestamp")
            json.value(timestamp)
            json.key("type")
            json.value(type)
            json.endObject()
        }
    }

    struct Typing: Encodable {
        var type = "typing"
        var roomId: Int64
        var userId: Int64
        var userName: String
        var isTyping: Bool
    }

    struct UserStatus: Encodable {
        var type = "user_status"
        var roomId: Int64
        var userId: Int64
        var userName: String
        var status: String
    }

    struct MessageRead: Encodable {
        var type = "message_read"
        var roomId: Int64
        var userId: Int64
        var userName: String
        @Null var lastReadAt: Date?
        var lastReadMessageId: Int64
        /// Only on the reader's own user stream: their unread count after reading.
        var unreadCount: Int?
        var seq: Int64
    }

    struct Participant: Encodable {
        var type: String
        var roomId: Int64
        var userId: Int64
        var userName: String
        var seq: Int64
    }

    struct ErrorFrame: Encodable {
        var type = "error"
        var detail: String
        var clientMessageId: String?
    }

    /// `{"type": ..., "seq"?: ..., <the body's fields>}`.
    struct Typed<Body: Encodable>: Encodable {
        var type: String
        var seq: Int64?
        var body: Body

        enum Keys: String, CodingKey { case type, seq }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(type, forKey: .type)
            try container.encodeIfPresent(seq, forKey: .seq)
            try body.encode(to: encoder)
        }
    }
}
