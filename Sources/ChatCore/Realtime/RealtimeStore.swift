import Foundation
import Postgres

/// What the real-time layer reads: new messages per room, room heads, membership, and the
/// admission check of a socket. Nothing here writes.
public struct RealtimeStore: Sendable {
    let db: PostgresClient

    public init(db: PostgresClient) {
        self.db = db
    }

    /// The messages of a room with id > `after`, oldest first. Ids follow commit order
    /// within a room (see `sql/0001_init.sql`), so reading from a cursor never skips a row.
    public func messages(roomID: Int64, after: Int64, limit: Int) async throws -> [Message] {
        try await db.query(
            """
            SELECT \(unescaped: SQLColumns.message) FROM messages m JOIN users u ON u.user_id = m.sender_id
            WHERE m.room_id = \(roomID) AND m.message_id > \(after)
            ORDER BY m.message_id LIMIT \(limit)
            """
        ).map(Message.init(row:))
    }

    /// The messages of a room with id > `after`, oldest first, and those of `userIDs` who
    /// are no longer active participants, read in one statement (one snapshot): a removal
    /// that committed before any returned message is always among the inactive.
    public func messages(roomID: Int64, after: Int64, limit: Int, inactiveAmong userIDs: [Int64]) async throws
        -> (messages: [Message], inactive: Set<Int64>)
    {
        let rows = try await db.query(
            """
            SELECT \(unescaped: SQLColumns.message), gone.ids AS inactive_user_ids
            FROM messages m JOIN users u ON u.user_id = m.sender_id
            CROSS JOIN (
                SELECT COALESCE(array_agg(s.id), '{}') AS ids FROM unnest(\(userIDs)) AS s (id)
                WHERE NOT \(Self.isActiveParticipant(roomID: roomID, userColumn: "s.id"))
            ) AS gone
            WHERE m.room_id = \(roomID) AND m.message_id > \(after)
            ORDER BY m.message_id LIMIT \(limit)
            """)
        guard let first = rows.first else { return ([], []) }
        return (try rows.map(Message.init(row:)), Set(try first.decode([Int64].self, "inactive_user_ids")))
    }

    public func message(id: Int64, roomID: Int64) async throws -> Message? {
        try await db.queryOptionalRow(
            """
            SELECT \(unescaped: SQLColumns.message) FROM messages m JOIN users u ON u.user_id = m.sender_id
            WHERE m.message_id = \(id) AND m.room_id = \(roomID)
            """
        ).map(Message.init(row:))
    }

    /// The newest message id of each room (0 when it has none).
    public func lastMessageIDs(roomIDs: [Int64]) async throws -> [Int64: Int64] {
        var heads: [Int64: Int64] = [:]
        for row in try await db.query(
            "SELECT room_id, last_message_id FROM rooms WHERE room_id = ANY(\(roomIDs))")
        {
            let (room, head) = try row.decode((Int64, Int64).self)
            heads[room] = head
        }
        return heads
    }

    public func lastMessageID(roomID: Int64) async throws -> Int64 {
        try await lastMessageIDs(roomIDs: [roomID])[roomID] ?? 0
    }

    /// The active rooms the user is an active participant of.
    public func roomIDs(of userID: Int64) async throws -> [Int64] {
        try await db.query(
            """
            SELECT p.room_id FROM room_participants p JOIN rooms r ON r.room_id = p.room_id
            WHERE p.user_id = \(userID) AND p.is_active AND r.is_active
            """
        ).map { try $0.decode(Int64.self, column: 0) }
    }

    /// Those of `userIDs` who are no longer active participants of the room, or no longer
    /// active users (or everyone, when the room itself was deactivated).
    public func inactiveParticipants(roomID: Int64, among userIDs: [Int64]) async throws -> Set<Int64> {
        guard !userIDs.isEmpty else { return [] }
        return Set(
            try await db.query(
                """
                SELECT u.id FROM unnest(\(userIDs)) AS u (id)
                WHERE NOT \(Self.isActiveParticipant(roomID: roomID, userColumn: "u.id"))
                """
            ).map { try $0.decode(Int64.self, column: 0) })
    }

    /// True while the user in `userColumn` is an active participant of the room, an active
    /// user, and the room is active: who may still hear the room.
    static func isActiveParticipant(roomID: Int64, userColumn: String) -> PostgresQuery {
        """
        EXISTS (
            SELECT 1 FROM room_participants p JOIN rooms r ON r.room_id = p.room_id
            JOIN users pu ON pu.user_id = p.user_id
            WHERE p.room_id = \(roomID) AND p.user_id = \(unescaped: userColumn) AND p.is_active AND r.is_active
              AND pu.is_active)
        """
    }

    public func participantIDs(roomID: Int64) async throws -> [Int64] {
        try await db.query(
            "SELECT user_id FROM room_participants WHERE room_id = \(roomID) AND is_active"
        ).map { try $0.decode(Int64.self, column: 0) }
    }

    /// The room as it appears in the user's room list.
    public func summary(roomID: Int64, userID: Int64) async throws -> RoomSummary? {
        try await db.queryOptionalRow(
            """
            SELECT \(unescaped: SQLColumns.roomSummary) FROM rooms r
            JOIN room_participants p ON p.room_id = r.room_id AND p.user_id = \(userID) AND p.is_active
            WHERE r.room_id = \(roomID)
            """
        ).map(RoomSummary.init(row:))
    }
}
