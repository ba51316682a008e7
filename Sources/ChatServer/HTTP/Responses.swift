import ChatCore
import Foundation
import Hummingbird

// Wire shapes of the API (snake_case comes from `ChatJSON.encoder`). Optional fields the
// contract shows as `null` are `@Null` so that they are written, not omitted.

/// Encodes nil as JSON `null` instead of leaving the key out.
@propertyWrapper
struct Null<Value: Encodable & Sendable>: Encodable, Sendable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) {
        self.wrappedValue = wrappedValue
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

struct RoomSummaryResponse: ResponseEncodable, Sendable {
    var roomId: Int64
    var roomName: String
    var roomType: RoomType
    var createdBy: Int64
    var isActive: Bool
    var createdAt: Date
    var updatedAt: Date
    var participantCount: Int
    @Null var lastMessage: String?
    var unreadCount: Int

    init(_ summary: RoomSummary) {
        roomId = summary.room.id
        roomName = summary.room.name
        roomType = summary.room.type
        createdBy = summary.room.createdBy
        isActive = summary.room.isActive
        createdAt = summary.room.createdAt
        updatedAt = summary.room.updatedAt
        participantCount = summary.participantCount
        lastMessage = summary.lastMessage
        unreadCount = summary.unreadCount
    }
}

struct RoomListResponse: ResponseEncodable, Sendable {
    var rooms: [RoomSummaryResponse]
    var totalCount: Int
}

struct RoomDetailResponse: ResponseEncodable, Sendable {
    var roomId: Int64
    var roomName: String
    var roomType: RoomType
    @Null var roomDescription: String?
    var maxParticipants: Int
    var createdBy: Int64
    var isActive: Bool
    var createdAt: Date
    var updatedAt: Date
    /// The room's newest change number: open the socket with `last_seq` = this to go live
    /// after loading history, without a gap.
    var seq: Int64

    init(_ room: Room) {
        roomId = room.id
        roomName = room.name
        roomType = room.type
        roomDescription = room.description
        maxParticipants = room.maxParticipants
        createdBy = room.createdBy
        isActive = room.isActive
        createdAt = room.createdAt
        updatedAt = room.updatedAt
        seq = room.seq
    }
}

struct ParticipantResponse: Encodable, Sendable {
    var id: Int64
    var roomId: Int64
    var userId: Int64
    var userName: String
    var joinedAt: Date
    @Null var lastReadAt: Date?
    var isActive: Bool

    init(_ participant: Participant) {
        id = participant.id
        roomId = participant.roomID
        userId = participant.userID
        userName = participant.userName
        joinedAt = participant.joinedAt
        lastReadAt = participant.lastReadAt
        isActive = participant.isActive
    }
}

struct ParticipantListResponse: ResponseEncodable, Sendable {
    var participants: [ParticipantResponse]
    var totalCount: Int

    init(_ participants: [Participant]) {
        self.participants = participants.map(ParticipantResponse.init)
        self.totalCount = participants.count
    }
}

struct MessageResponse: Encodable, Sendable {
    var messageId: Int64
    var roomId: Int64
    var senderId: Int64
    var senderName: String
    @Null var messageContent: String?
    var messageType: MessageType
    @Null var fileUrl: String?
    @Null var fileName: String?
    @Null var fileSize: Int64?
    @Null var replyToMessageId: Int64?
    /// Present only when the sender gave one.
    var clientMessageId: String?
    var isEdited: Bool
    var isDeleted: Bool
    @Null var editedAt: Date?
    var createdAt: Date
    var updatedAt: Date

    init(_ message: Message, files: FileURLs) {
        messageId = message.id
        roomId = message.roomID
        senderId = message.senderID
        senderName = message.senderName
        messageContent = message.content
        messageType = message.type
        fileUrl = message.filePath.map(files.url(forPath:))
        fileName = message.fileName
        fileSize = message.fileSize
        replyToMessageId = message.replyToMessageID
        clientMessageId = message.clientMessageID
        isEdited = message.isEdited
        isDeleted = message.isDeleted
        editedAt = message.editedAt
        createdAt = message.createdAt
        updatedAt = message.updatedAt
    }
}

extension MessageResponse: JSONWritable {
    func write(to json: inout JSONWriter) {
        json.beginObject()
        if let clientMessageId {
            json.key("client_message_id")
            json.value(clientMessageId)
        }
        json.key("created_at")
        json.value(createdAt)
        json.key("edited_at")
        json.value(editedAt)
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
        json.key("message_content")
        json.value(messageContent)
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
        json.key("updated_at")
        json.value(updatedAt)
        json.endObject()
    }
}

struct MessageListResponse: Encodable, Sendable {
    var messages: [MessageResponse]
    var totalCount: Int
    var hasMore: Bool
}

extension MessageListResponse: JSONWritable {
    func write(to json: inout JSONWriter) {
        json.beginObject()
        json.key("has_more")
        json.value(hasMore)
        json.key("messages")
        json.beginArray()
        for message in messages { message.write(to: &json) }
        json.endArray()
        json.key("total_count")
        json.value(totalCount)
        json.endObject()
    }
}

struct ReadResponse: ResponseEncodable, Sendable {
    var roomId: Int64
    var userId: Int64
    @Null var lastReadAt: Date?
    var unreadCount: Int
}

/// Builds the public URL of a stored upload.
struct FileURLs: Sendable {
    var publicBaseURL: String

    func url(forPath path: String) -> String {
        "\(publicBaseURL)/uploads/\(path)"
    }
}
