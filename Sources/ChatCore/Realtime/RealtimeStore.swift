import Foundation
import Postgres

/// What the real-time layer reads: new messages per room, room heads, membership, and the
/// admission check of a socket. Nothing here writes.
public struct RealtimeStore: Sendable {
    let db: PostgresClient

    public init(db: PostgresClient) {
        self.db = db
    }

    /// The messages of a room with id > `afterID` and a change number up to `throughSeq`,
    /// oldest first (a `last_message_id` catch-up). Ids follow commit order within a room
    /// (see `sql/0001_init.sql`), so reading from a cursor never skips a row.
    public func messages(roomID: Int64, afterID: Int64, throughSeq: Int64, limit: Int) async throws -> [Message] {
        try await db.query(
            """
            SELECT \(unescaped: SQLColumns.message) FROM messages m JOIN users u ON u.user_id = m.sender_id
            WHERE m.room_id = \(roomID) AND m.message_id > \(afterID) AND m.seq <= \(throughSeq)
            ORDER BY m.message_id LIMIT \(limit)
            """
        ).map(Message.init(row:))
    }

    /// The changes of a room numbered after `after` and up to `through`, in order
    /// (`sql/0009_change_sequence.sql`). Numbers follow commit order within a room, so reading
    /// from a cursor never skips a change; membership changes (`participant_left`, whether by
    /// the API or by psql) are changes too, so a reader that applies them in order knows who
    /// may hear each later change without asking.
    public func changes(roomID: Int64, after: Int64, through: Int64 = .max, limit: Int) async throws -> [RoomChange] {
        try await db.query(
            """
            WITH c AS (
                (SELECT m.seq, 'message_created'::text AS kind, m.message_id, NULL::bigint AS user_id,
                        NULL::timestamptz AS read_at, NULL::boolean AS receipts
                 FROM messages m WHERE m.room_id = \(roomID) AND m.seq > \(after) AND m.seq <= \(through)
                 ORDER BY m.seq LIMIT \(limit))
                UNION ALL
                (SELECT x.seq, x.kind, x.message_id, x.user_id, x.read_at, x.receipts
                 FROM room_changes x WHERE x.room_id = \(roomID) AND x.seq > \(after) AND x.seq <= \(through)
                 ORDER BY x.seq LIMIT \(limit))
                ORDER BY seq LIMIT \(limit)
            )
            SELECT c.seq AS change_seq, c.kind AS change_kind, c.user_id AS change_user_id,
                cu.user_name AS change_user_name, c.read_at, c.receipts, c.message_id AS change_message_id,
                CASE WHEN c.kind = 'message_read' THEN (
                    SELECT count(*) FROM messages x WHERE x.room_id = \(roomID) AND x.message_id > c.message_id
                      AND x.sender_id <> c.user_id AND NOT x.is_deleted) END AS unread_count,
                \(unescaped: SQLColumns.message)
            FROM c
            LEFT JOIN messages m ON m.message_id = c.message_id
                AND c.kind IN ('message_created', 'message_updated', 'message_deleted')
            LEFT JOIN users u ON u.user_id = m.sender_id
            LEFT JOIN users cu ON cu.user_id = c.user_id
            ORDER BY c.seq
            """
        ).compactMap { try RoomChange(roomID: roomID, row: $0) }
    }

    public func message(id: Int64, roomID: Int64) async throws -> Message? {
        try await db.queryOptionalRow(
            """
            SELECT \(unescaped: SQLColumns.message) FROM messages m JOIN users u ON u.user_id = m.sender_id
            WHERE m.message_id = \(id) AND m.room_id = \(roomID)
            """
        ).map(Message.init(row:))
    }

    /// The newest change number of each room.
    public func lastSeqs(roomIDs: [Int64]) async throws -> [Int64: Int64] {
        var heads: [Int64: Int64] = [:]
        for row in try await db.query("SELECT room_id, last_seq FROM rooms WHERE room_id = ANY(\(roomIDs))") {
            let (room, head) = try row.decode((Int64, Int64).self)
            heads[room] = head
        }
        return heads
    }

    /// Where the room's history and change sequence stand now.
    public func changeWindow(roomID: Int64) async throws -> ChangeWindow? {
        try await db.queryOptionalRow(
            """
            SELECT r.last_message_id, r.last_seq, COALESCE(f.seq_floor, 0)
            FROM rooms r LEFT JOIN room_change_floors f ON f.room_id = r.room_id WHERE r.room_id = \(roomID)
            """
        ).map { row in
            let (lastMessageID, lastSeq, floor) = try row.decode((Int64, Int64, Int64).self)
            return ChangeWindow(lastMessageID: lastMessageID, lastSeq: lastSeq, floor: floor)
        }
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
        Set(
            try await inactiveSubscribers(roomIDs: Array(repeating: roomID, count: userIDs.count), userIDs: userIDs)
                .map(\.userID))
    }

    /// The pairs of (`roomIDs[i]`, `userIDs[i]`) whose user may no longer hear the room: not an
    /// active participant, not an active user, or the room deactivated. One statement for every
    /// subscription of an instance (the hub's periodic sweep, for what the change sequence does
    /// not carry: a deactivated user or room whose notice was lost).
    public func inactiveSubscribers(roomIDs: [Int64], userIDs: [Int64]) async throws -> [(roomID: Int64, userID: Int64)] {
        guard !roomIDs.isEmpty else { return [] }
        return try await db.query(
            """
            SELECT s.room_id, s.user_id FROM unnest(\(roomIDs), \(userIDs)) AS s (room_id, user_id)
            WHERE NOT EXISTS (
                SELECT 1 FROM room_participants p JOIN rooms r ON r.room_id = p.room_id
                JOIN users pu ON pu.user_id = p.user_id
                WHERE p.room_id = s.room_id AND p.user_id = s.user_id AND p.is_active AND r.is_active AND pu.is_active)
            """
        ).map { row in
            let (roomID, userID) = try row.decode((Int64, Int64).self)
            return (roomID, userID)
        }
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

extension RoomChange {
    /// A row of `RealtimeStore.changes`; nil for an edit or delete of a message that no
    /// longer exists (removed by the retention job since).
    init?(roomID: Int64, row: PostgresRow) throws {
        let seq = try row.decode(Int64.self, "change_seq")
        let kind = try row.decode(String.self, "change_kind")
        let event: Event
        switch kind {
        case "message_created", "message_updated", "message_deleted":
            guard try row.decode(Int64?.self, "message_id") != nil else { return nil }
            let message = try Message(row: row)
            event =
                kind == "message_created"
                ? .messageCreated(message) : kind == "message_updated" ? .messageUpdated(message) : .messageDeleted(message)
        case "message_read":
            event = .messageRead(
                Reader(
                    userID: try row.decode(Int64.self, "change_user_id"),
                    userName: try row.decode(String?.self, "change_user_name") ?? "",
                    lastReadAt: try row.decode(Date?.self, "read_at"),
                    lastReadMessageID: try row.decode(Int64.self, "change_message_id"),
                    unreadCount: try row.decode(Int.self, "unread_count")),
                receipts: try row.decode(Bool?.self, "receipts") ?? true)
        case "participant_joined", "participant_left":
            let userID = try row.decode(Int64.self, "change_user_id")
            let name = try row.decode(String?.self, "change_user_name") ?? ""
            event =
                kind == "participant_joined"
                ? .participantJoined(userID: userID, userName: name) : .participantLeft(userID: userID, userName: name)
        default:
            throw PostgresError(.decoding, message: "unknown change kind '\(kind)'", column: "change_kind")
        }
        self.init(roomID: roomID, seq: seq, event: event)
    }
}
