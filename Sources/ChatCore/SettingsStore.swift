import Postgres

/// A room's settings as one participant sees them: their own preferences
/// (`notificationEnabled`, `readReceiptEnabled`) and the room-wide retention settings.
public struct RoomSettings: Sendable, Equatable {
    public var roomID: Int64
    public var notificationEnabled: Bool
    public var messageRetentionDays: Int
    public var autoDeleteEnabled: Bool
    public var readReceiptEnabled: Bool
}

/// A partial update: nil fields stay as they are.
public struct RoomSettingsChange: Sendable, Equatable {
    public var notificationEnabled: Bool?
    public var readReceiptEnabled: Bool?
    public var messageRetentionDays: Int?
    public var autoDeleteEnabled: Bool?

    public init(
        notificationEnabled: Bool? = nil, readReceiptEnabled: Bool? = nil, messageRetentionDays: Int? = nil,
        autoDeleteEnabled: Bool? = nil
    ) {
        self.notificationEnabled = notificationEnabled
        self.readReceiptEnabled = readReceiptEnabled
        self.messageRetentionDays = messageRetentionDays
        self.autoDeleteEnabled = autoDeleteEnabled
    }

    /// Whether the change touches settings that belong to the room (creator only).
    public var changesRoomWideSettings: Bool { messageRetentionDays != nil || autoDeleteEnabled != nil }
}

public struct SettingsStore: Sendable {
    public static let retentionDays = 1...3650

    let db: ChatDatabase

    public init(db: ChatDatabase) {
        self.db = db
    }

    public func settings(roomID: Int64, userID: Int64) async throws -> RoomSettings {
        try await db.read(for: userID) { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            return try await connection.settings(roomID: roomID, userID: userID)
        }
    }

    /// Applies a partial update. Room-wide fields may be changed only by the room's creator.
    public func update(roomID: Int64, userID: Int64, change: RoomSettingsChange) async throws -> RoomSettings {
        if let days = change.messageRetentionDays, !Self.retentionDays.contains(days) {
            throw ChatError.invalid(
                "message_retention_days must be within \(Self.retentionDays.lowerBound)...\(Self.retentionDays.upperBound)")
        }
        let settings = try await db.primary.withTransaction { connection in
            let access = try await connection.roomAccess(roomID: roomID, userID: userID, lock: .forUpdate)
            if change.changesRoomWideSettings {
                guard access.createdBy == userID else {
                    throw ChatError.forbidden("Only the room's creator can change message_retention_days and auto_delete_enabled")
                }
                try await connection.execute(
                    """
                    UPDATE rooms SET
                        message_retention_days = COALESCE(\(change.messageRetentionDays), message_retention_days),
                        auto_delete_enabled = COALESCE(\(change.autoDeleteEnabled), auto_delete_enabled),
                        updated_at = now()
                    WHERE room_id = \(roomID)
                    """)
            }
            if change.notificationEnabled != nil || change.readReceiptEnabled != nil {
                try await connection.execute(
                    """
                    UPDATE room_participants SET
                        notification_enabled = COALESCE(\(change.notificationEnabled), notification_enabled),
                        read_receipt_enabled = COALESCE(\(change.readReceiptEnabled), read_receipt_enabled)
                    WHERE room_id = \(roomID) AND user_id = \(userID)
                    """)
            }
            return try await connection.settings(roomID: roomID, userID: userID)
        }
        db.wrote(by: userID)
        return settings
    }
}

extension PostgresConnection {
    func settings(roomID: Int64, userID: Int64) async throws -> RoomSettings {
        let row = try await queryRow(
            """
            SELECT p.notification_enabled, r.message_retention_days, r.auto_delete_enabled, p.read_receipt_enabled
            FROM rooms r JOIN room_participants p ON p.room_id = r.room_id AND p.user_id = \(userID)
            WHERE r.room_id = \(roomID)
            """)
        return RoomSettings(
            roomID: roomID,
            notificationEnabled: try row.decode(Bool.self, "notification_enabled"),
            messageRetentionDays: try row.decode(Int.self, "message_retention_days"),
            autoDeleteEnabled: try row.decode(Bool.self, "auto_delete_enabled"),
            readReceiptEnabled: try row.decode(Bool.self, "read_receipt_enabled"))
    }
}
