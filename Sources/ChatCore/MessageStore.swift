import Foundation
import Postgres

/// A message as a client submits it (REST or WebSocket).
public struct MessageDraft: Sendable {
    public var content: String?
    public var type: MessageType
    public var replyToMessageID: Int64?
    public var clientMessageID: String?
    public var file: StoredFile?

    public init(
        content: String?, type: MessageType = .text, replyToMessageID: Int64? = nil, clientMessageID: String? = nil,
        file: StoredFile? = nil
    ) {
        self.content = content
        self.type = type
        self.replyToMessageID = replyToMessageID
        self.clientMessageID = clientMessageID
        self.file = file
    }
}

/// An uploaded file already written under the upload directory.
public struct StoredFile: Sendable, Equatable {
    public var path: String
    public var originalName: String
    public var size: Int64
    public var contentType: String

    public init(path: String, originalName: String, size: Int64, contentType: String) {
        self.path = path
        self.originalName = originalName
        self.size = size
        self.contentType = contentType
    }
}

/// The result of a send: the message, and whether this call created it (false when a
/// `client_message_id` repeat returned the earlier message).
public struct SendOutcome: Sendable {
    public var message: Message
    public var created: Bool
}

/// The result of a delete: the message, and the file it no longer references.
public struct DeleteOutcome: Sendable {
    public var message: Message
    public var removedFilePath: String?
}

/// Messages: history, the one send path (REST and WebSocket), edit, delete, read marks.
public struct MessageStore: Sendable {
    public static let maxPageSize = 100

    let db: ChatDatabase
    let events: any ChatEventSink
    let writer: MessageWriter

    public init(db: ChatDatabase, events: any ChatEventSink, writer: MessageWriter) {
        self.db = db
        self.events = events
        self.writer = writer
    }

    public func messages(roomID: Int64, for userID: Int64, window: MessageWindow) async throws -> MessagePage {
        try await db.read(for: userID) { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            let total = try await connection.queryRow(
                "SELECT count(*) FROM messages WHERE room_id = \(roomID)"
            ).decode(Int.self, column: 0)
            let select = "SELECT \(SQLColumns.message) FROM messages m JOIN users u ON u.user_id = m.sender_id"
            let rows: PostgresRows
            let size: Int
            switch window {
            case .page(let page, let pageSize):
                size = pageSize
                rows = try await connection.query(
                    """
                    \(unescaped: select) WHERE m.room_id = \(roomID)
                    ORDER BY m.message_id DESC LIMIT \(size + 1) OFFSET \(offset(page: page, size: size))
                    """)
            case .before(let id, let pageSize):
                size = pageSize
                rows = try await connection.query(
                    """
                    \(unescaped: select) WHERE m.room_id = \(roomID) AND m.message_id < \(id)
                    ORDER BY m.message_id DESC LIMIT \(size + 1)
                    """)
            case .after(let id, let pageSize):
                size = pageSize
                rows = try await connection.query(
                    """
                    \(unescaped: select) WHERE m.room_id = \(roomID) AND m.message_id > \(id)
                    ORDER BY m.message_id ASC LIMIT \(size + 1)
                    """)
            }
            let messages = try rows.prefix(size).map(Message.init(row:))
            return MessagePage(messages: messages, totalCount: total, hasMore: rows.count > size)
        }
    }

    /// Checks a draft against the contract's rules, without touching the database.
    public func validate(_ draft: MessageDraft, roomID: Int64, senderID: Int64) throws(ChatError) -> ValidatedMessage {
        let clientMessageID = try Validation.clientMessageID(draft.clientMessageID)
        let content: String?
        if draft.type.carriesFile {
            guard draft.file != nil else { throw ChatError.invalid("file is required for \(draft.type.rawValue) messages") }
            // The caption is optional for file messages.
            content = try draft.content.flatMap { (text: String) throws(ChatError) -> String? in
                text.isEmpty ? nil : try Validation.messageContent(text)
            }
        } else {
            guard draft.file == nil else { throw ChatError.invalid("\(draft.type.rawValue) messages cannot carry a file") }
            content = try Validation.content(draft.content, for: draft.type)
        }
        return ValidatedMessage(
            roomID: roomID, senderID: senderID, content: content, type: draft.type,
            replyToMessageID: draft.replyToMessageID, clientMessageID: clientMessageID, file: draft.file)
    }

    /// Validates and stores a message, then publishes it. The same path serves REST and
    /// WebSocket sends. With a `client_message_id` already used by this sender in this
    /// room, returns the earlier message instead (`created == false`).
    public func send(roomID: Int64, senderID: Int64, draft: MessageDraft) async throws -> SendOutcome {
        try await send(try validate(draft, roomID: roomID, senderID: senderID))
    }

    /// Stores a validated message (checking the room, the sender's membership and the reply
    /// target in the same statement), then publishes it.
    public func send(_ message: ValidatedMessage) async throws -> SendOutcome {
        let outcome = try await writer.store(message).get()
        db.wrote(by: message.senderID)
        if outcome.created {
            await events.publish(.messageCreated(outcome.message))
        }
        return outcome
    }

    /// Changes a message's text (sender only; not once deleted).
    public func edit(roomID: Int64, messageID: Int64, by userID: Int64, content newContent: String?) async throws
        -> Message
    {
        let message: Message = try await db.primary.withTransaction { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            let current = try await connection.lockedMessage(roomID: roomID, messageID: messageID)
            guard current.senderID == userID else { throw ChatError.forbidden("Only the sender can edit a message") }
            guard !current.isDeleted else { throw ChatError.notAllowed("A deleted message cannot be edited") }
            let content =
                current.type.carriesFile
                ? try Validation.messageContent(newContent) : try Validation.content(newContent, for: current.type)
            return try Message(
                row: try await connection.queryRow(
                    """
                    WITH m AS (
                        UPDATE messages SET message_content = \(content), is_edited = true,
                            edited_at = now(), updated_at = now()
                        WHERE message_id = \(messageID) RETURNING *
                    )
                    SELECT \(unescaped: SQLColumns.message) FROM m JOIN users u ON u.user_id = m.sender_id
                    """))
        }
        db.wrote(by: userID)
        await events.publish(.messageUpdated(message))
        return message
    }

    /// Soft-deletes a message (sender only). Deleting again returns the deleted message.
    public func delete(roomID: Int64, messageID: Int64, by userID: Int64) async throws -> DeleteOutcome {
        let (outcome, changed): (DeleteOutcome, Bool) = try await db.primary.withTransaction { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            let current = try await connection.lockedMessage(roomID: roomID, messageID: messageID)
            guard current.senderID == userID else { throw ChatError.forbidden("Only the sender can delete a message") }
            if current.isDeleted { return (DeleteOutcome(message: current, removedFilePath: nil), false) }
            let row = try await connection.queryRow(
                """
                WITH m AS (
                    UPDATE messages SET is_deleted = true, deleted_at = now(), updated_at = now(),
                        message_content = NULL, file_path = NULL, file_name = NULL, file_size = NULL,
                        file_content_type = NULL
                    WHERE message_id = \(messageID) RETURNING *
                )
                SELECT \(unescaped: SQLColumns.message) FROM m JOIN users u ON u.user_id = m.sender_id
                """)
            return (DeleteOutcome(message: try Message(row: row), removedFilePath: current.filePath), true)
        }
        db.wrote(by: userID)
        if changed { await events.publish(.messageDeleted(outcome.message)) }
        return outcome
    }

    /// Marks the room read for the user: up to the newest message, or up to `messageID`.
    /// The read position never moves backwards.
    public func markRead(roomID: Int64, userID: Int64, upTo messageID: Int64?) async throws -> ReadState {
        let state: ReadState = try await db.primary.withTransaction { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            let target: (id: Int64, readAt: Date?)
            if let messageID {
                guard
                    let row = try await connection.queryOptionalRow(
                        "SELECT created_at FROM messages WHERE message_id = \(messageID) AND room_id = \(roomID)")
                else { throw ChatError.invalid("message_id \(messageID) is not a message of this room") }
                target = (messageID, try row.decode(Date.self, column: 0))
            } else {
                let newest = try await connection.queryRow(
                    "SELECT COALESCE(max(message_id), 0) FROM messages WHERE room_id = \(roomID)"
                ).decode(Int64.self, column: 0)
                target = (newest, nil)
            }
            let row = try await connection.queryRow(
                """
                WITH p AS (
                    UPDATE room_participants SET
                        last_read_at = CASE
                            WHEN \(target.id) > last_read_message_id OR \(target.readAt) IS NULL
                            THEN GREATEST(last_read_at, COALESCE(\(target.readAt), now())) ELSE last_read_at END,
                        last_read_message_id = GREATEST(last_read_message_id, \(target.id))
                    WHERE room_id = \(roomID) AND user_id = \(userID)
                    RETURNING room_id, user_id, last_read_at, last_read_message_id, read_receipt_enabled
                )
                SELECT p.*, u.user_name,
                    (SELECT count(*) FROM messages m WHERE m.room_id = p.room_id
                        AND m.message_id > p.last_read_message_id AND m.sender_id <> p.user_id
                        AND NOT m.is_deleted) AS unread_count
                FROM p JOIN users u ON u.user_id = p.user_id
                """)
            return ReadState(
                roomID: roomID, userID: userID, userName: try row.decode(String.self, "user_name"),
                lastReadAt: try row.decode(Date?.self, "last_read_at"),
                lastReadMessageID: try row.decode(Int64.self, "last_read_message_id"),
                unreadCount: try row.decode(Int.self, "unread_count"),
                readReceiptsEnabled: try row.decode(Bool.self, "read_receipt_enabled"))
        }
        db.wrote(by: userID)
        // Announced even with read receipts off: the reader's other devices learn the new
        // unread count (others are not told; see ChangeFrames).
        await events.publish(.messageRead(state))
        return state
    }
}

extension PostgresConnection {
    /// The message, locked until the transaction ends; 404 unless it belongs to the room.
    func lockedMessage(roomID: Int64, messageID: Int64) async throws -> Message {
        guard
            let row = try await queryOptionalRow(
                """
                SELECT \(unescaped: SQLColumns.message) FROM messages m JOIN users u ON u.user_id = m.sender_id
                WHERE m.message_id = \(messageID) AND m.room_id = \(roomID) FOR NO KEY UPDATE OF m
                """)
        else { throw ChatError.notFound("Message not found") }
        return try Message(row: row)
    }
}
