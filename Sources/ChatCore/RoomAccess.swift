import Postgres

/// What a room path needs to know before acting: the room exists and is active (else
/// 404), and the caller is one of its active participants (else 403).
struct RoomAccess: Sendable {
    var roomID: Int64
    var type: RoomType
    var createdBy: Int64
    var maxParticipants: Int
}

enum RoomLock {
    case none
    /// Serialises writers of the room (message sends, membership changes) until commit.
    case forUpdate
}

extension PostgresConnection {
    func roomAccess(roomID: Int64, userID: Int64, lock: RoomLock = .none) async throws -> RoomAccess {
        let row: PostgresRow
        let isParticipant: Bool
        switch lock {
        case .none:
            guard
                let found = try await queryOptionalRow(
                    """
                    SELECT r.room_type, r.created_by, r.max_participants,
                        EXISTS (SELECT 1 FROM room_participants p
                                WHERE p.room_id = r.room_id AND p.user_id = \(userID) AND p.is_active) AS is_participant
                    FROM rooms r WHERE r.room_id = \(roomID) AND r.is_active
                    """)
            else { throw ChatError.notFound("Room not found") }
            row = found
            isParticipant = try row.decode(Bool.self, "is_participant")
        case .forUpdate:
            guard
                let found = try await queryOptionalRow(
                    """
                    SELECT r.room_type, r.created_by, r.max_participants FROM rooms r
                    WHERE r.room_id = \(roomID) AND r.is_active FOR NO KEY UPDATE OF r
                    """)
            else { throw ChatError.notFound("Room not found") }
            row = found
            // A separate statement: after waiting for the lock it sees membership changes
            // committed meanwhile (a participant just removed cannot slip one more write in).
            isParticipant =
                try await queryOptionalRow(
                    """
                    SELECT 1 FROM room_participants
                    WHERE room_id = \(roomID) AND user_id = \(userID) AND is_active
                    """) != nil
        }
        guard isParticipant else {
            throw ChatError.forbidden("You are not a participant of this room")
        }
        return RoomAccess(
            roomID: roomID,
            type: RoomType(rawValue: try row.decode(String.self, "room_type")) ?? .group,
            createdBy: try row.decode(Int64.self, "created_by"),
            maxParticipants: try row.decode(Int.self, "max_participants"))
    }
}
