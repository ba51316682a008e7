import Foundation
import Postgres

// The column lists and row decoders for the domain types, kept together so that a query
// selecting `\(unescaped: SQLColumns.message)` always decodes with `Message(row:)`.

enum SQLColumns {
    /// Room columns as the participant row aliased `p` sees them: a direct room created
    /// without a name is named after the other participant (`sql/0007_direct_room_names.sql`).
    static let room = """
        r.room_id,
        CASE WHEN r.name_is_default THEN COALESCE(
            (SELECT o.user_name FROM users o
             WHERE o.user_id = CASE WHEN p.user_id = r.direct_user_low THEN r.direct_user_high ELSE r.direct_user_low END),
            r.room_name) ELSE r.room_name END AS room_name,
        r.room_type, r.room_description, r.max_participants, r.created_by,
        r.is_active, r.created_at, r.updated_at, r.last_seq
        """

    /// Room columns plus the view of the participant row aliased `p`: counts and last message.
    static let roomSummary = """
        \(room),
        (SELECT count(*) FROM room_participants c WHERE c.room_id = r.room_id AND c.is_active) AS participant_count,
        (SELECT COALESCE(NULLIF(m.message_content, ''), m.file_name) FROM messages m
            WHERE m.room_id = r.room_id AND NOT m.is_deleted
            ORDER BY m.message_id DESC LIMIT 1) AS last_message,
        (SELECT count(*) FROM messages m
            WHERE m.room_id = r.room_id AND m.message_id > p.last_read_message_id
              AND m.sender_id <> p.user_id AND NOT m.is_deleted) AS unread_count
        """

    static let message = """
        m.message_id, m.room_id, m.sender_id, u.user_name AS sender_name, m.message_content,
        m.message_type, m.file_path, m.file_name, m.file_size, m.reply_to_message_id,
        m.client_message_id, m.is_edited, m.is_deleted, m.edited_at, m.created_at, m.updated_at, m.seq
        """

    static let participant = """
        p.id, p.room_id, p.user_id, u.user_name, p.joined_at, p.last_read_at, p.is_active
        """
}

extension Room {
    init(row: PostgresRow) throws {
        let type = try row.decode(String.self, "room_type")
        guard let roomType = RoomType(rawValue: type) else {
            throw PostgresError(.decoding, message: "unknown room_type '\(type)'", column: "room_type")
        }
        self.init(
            id: try row.decode(Int64.self, "room_id"),
            name: try row.decode(String.self, "room_name"),
            type: roomType,
            description: try row.decode(String?.self, "room_description"),
            maxParticipants: try row.decode(Int.self, "max_participants"),
            createdBy: try row.decode(Int64.self, "created_by"),
            isActive: try row.decode(Bool.self, "is_active"),
            createdAt: try row.decode(Date.self, "created_at"),
            updatedAt: try row.decode(Date.self, "updated_at"),
            seq: try row.decode(Int64.self, "last_seq"))
    }
}

extension RoomSummary {
    init(row: PostgresRow) throws {
        self.init(
            room: try Room(row: row),
            participantCount: try row.decode(Int.self, "participant_count"),
            lastMessage: try row.decode(String?.self, "last_message"),
            unreadCount: try row.decode(Int.self, "unread_count"))
    }
}

extension Participant {
    init(row: PostgresRow) throws {
        self.init(
            id: try row.decode(Int64.self, "id"),
            roomID: try row.decode(Int64.self, "room_id"),
            userID: try row.decode(Int64.self, "user_id"),
            userName: try row.decode(String.self, "user_name"),
            joinedAt: try row.decode(Date.self, "joined_at"),
            lastReadAt: try row.decode(Date?.self, "last_read_at"),
            isActive: try row.decode(Bool.self, "is_active"))
    }
}

extension Message {
    init(row: PostgresRow) throws {
        let type = try row.decode(String.self, "message_type")
        guard let messageType = MessageType(rawValue: type) else {
            throw PostgresError(.decoding, message: "unknown message_type '\(type)'", column: "message_type")
        }
        let isDeleted = try row.decode(Bool.self, "is_deleted")
        self.init(
            id: try row.decode(Int64.self, "message_id"),
            roomID: try row.decode(Int64.self, "room_id"),
            senderID: try row.decode(Int64.self, "sender_id"),
            senderName: try row.decode(String.self, "sender_name"),
            // A row soft-deleted by hand (psql) may still hold content: never show it.
            content: isDeleted ? nil : try row.decode(String?.self, "message_content"),
            type: messageType,
            filePath: isDeleted ? nil : try row.decode(String?.self, "file_path"),
            fileName: isDeleted ? nil : try row.decode(String?.self, "file_name"),
            fileSize: isDeleted ? nil : try row.decode(Int64?.self, "file_size"),
            replyToMessageID: try row.decode(Int64?.self, "reply_to_message_id"),
            clientMessageID: try row.decode(String?.self, "client_message_id"),
            isEdited: try row.decode(Bool.self, "is_edited"),
            isDeleted: isDeleted,
            editedAt: try row.decode(Date?.self, "edited_at"),
            createdAt: try row.decode(Date.self, "created_at"),
            updatedAt: try row.decode(Date.self, "updated_at"),
            seq: try row.decode(Int64.self, "seq"))
    }
}

extension User {
    init(row: PostgresRow) throws {
        self.init(
            id: try row.decode(Int64.self, "user_id"),
            name: try row.decode(String.self, "user_name"),
            isActive: try row.decode(Bool.self, "is_active"),
            createdAt: try row.decode(Date.self, "created_at"))
    }
}
