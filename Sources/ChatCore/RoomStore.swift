import Logging
import Postgres

/// What a client asks for when creating a room.
public struct NewRoom: Sendable {
    public var name: String?
    public var type: RoomType
    public var description: String?
    public var participantIDs: [Int64]
    /// Group rooms only (ignored for direct rooms): at most this many active participants,
    /// `RoomStore.participantLimits`; nil for the default.
    public var maxParticipants: Int?

    public init(name: String?, type: RoomType, description: String?, participantIDs: [Int64], maxParticipants: Int? = nil) {
        self.name = name
        self.type = type
        self.description = description
        self.participantIDs = participantIDs
        self.maxParticipants = maxParticipants
    }
}

/// Rooms and their membership.
public struct RoomStore: Sendable {
    public static let defaultMaxParticipants = 100
    /// What `max_participants` may be set to (the schema's CHECK says the same).
    public static let participantLimits = 2...10_000
    /// Upper bound on ids in one request body, checked before any other work (a room of the
    /// largest size can be created in one request).
    public static let maxIDsPerRequest = 10_000

    let db: ChatDatabase
    let events: any ChatEventSink

    public init(db: ChatDatabase, events: any ChatEventSink) {
        self.db = db
        self.events = events
    }

    /// The caller's active rooms, most recent activity first, and how many there are.
    public func rooms(for userID: Int64, page: Int, size: Int) async throws -> (rooms: [RoomSummary], total: Int) {
        try await db.read(for: userID) { connection in
            let total = try await connection.queryRow(
                """
                SELECT count(*) FROM room_participants p JOIN rooms r ON r.room_id = p.room_id AND r.is_active
                WHERE p.user_id = \(userID) AND p.is_active
                """
            ).decode(Int.self, column: 0)
            let rows = try await connection.query(
                """
                SELECT \(unescaped: SQLColumns.roomSummary)
                FROM room_participants p JOIN rooms r ON r.room_id = p.room_id AND r.is_active
                WHERE p.user_id = \(userID) AND p.is_active
                ORDER BY COALESCE(r.last_message_at, r.updated_at) DESC, r.room_id DESC
                LIMIT \(size) OFFSET \(offset(page: page, size: size))
                """)
            return (try rows.map(RoomSummary.init(row:)), total)
        }
    }

    /// Creates a room. For a direct room that already exists between the two users, returns
    /// it with `created == false` (and makes both users active in it again).
    public func create(_ new: NewRoom, by creator: User) async throws -> (summary: RoomSummary, created: Bool) {
        guard new.participantIDs.count <= Self.maxIDsPerRequest else {
            throw ChatError.invalid("participant_ids may name at most \(Self.maxIDsPerRequest) users")
        }
        let others = uniqued(new.participantIDs.filter { $0 != creator.id })
        let description = try Validation.roomDescription(new.description)
        switch new.type {
        case .direct:
            guard others.count == 1 else {
                throw ChatError.invalid("A direct room needs exactly one other participant")
            }
        case .group:
            guard !others.isEmpty else { throw ChatError.invalid("A group room needs at least one other participant") }
        }
        let maxParticipants = new.type == .group ? new.maxParticipants ?? Self.defaultMaxParticipants : 2
        if new.type == .group {
            guard Self.participantLimits.contains(maxParticipants) else {
                throw ChatError.invalid(
                    "max_participants must be an integer in \(Self.participantLimits.lowerBound)...\(Self.participantLimits.upperBound)")
            }
            guard others.count + 1 <= maxParticipants else {
                throw ChatError.invalid("A room can have at most \(maxParticipants) participants (max_participants)")
            }
        }
        var name = try new.name.map(Validation.roomName)
        if new.type == .group, name == nil { throw ChatError.invalid("room_name is required for a group room") }

        let result: (summary: RoomSummary, created: Bool, rejoined: [Participant]) = try await db.primary.withTransaction {
            connection in
            let known = try await connection.query(
                "SELECT user_id, user_name FROM users WHERE user_id = ANY(\(others)) AND is_active")
            var names: [Int64: String] = [:]
            for row in known { names[try row.decode(Int64.self, column: 0)] = try row.decode(String.self, column: 1) }
            let unknown = others.filter { names[$0] == nil }
            guard unknown.isEmpty else {
                throw ChatError.invalid("Unknown user ids: \(unknown.map(String.init).joined(separator: ", "))")
            }
            let members = [creator.id] + others
            let roomID: Int64
            let created: Bool
            switch new.type {
            case .direct:
                let other = others[0]
                let nameIsDefault = name == nil
                name = name ?? names[other]
                let (low, high) = (min(creator.id, other), max(creator.id, other))
                (roomID, created) = try await connection.createDirectRoom(
                    name: name!, nameIsDefault: nameIsDefault, description: description, creator: creator.id,
                    low: low, high: high)
                // Only the user who removed the other one can bring them back (sql/0012).
                if !created,
                    try await connection.queryOptionalRow(
                        """
                        SELECT 1 FROM room_participants WHERE room_id = \(roomID) AND user_id = \(creator.id)
                            AND NOT is_active AND removed_by IS NOT NULL AND removed_by <> \(creator.id)
                        """) != nil
                {
                    throw ChatError.forbidden("You were removed from this direct room; only the user who removed you can add you back")
                }
            case .group:
                roomID = try await connection.queryRow(
                    """
                    INSERT INTO rooms (room_name, room_type, room_description, created_by, max_participants)
                    VALUES (\(name!), 'group', \(description), \(creator.id), \(maxParticipants))
                    RETURNING room_id
                    """
                ).decode(Int64.self, column: 0)
                created = true
            }
            let joined = try await connection.activate(members, in: roomID)
            let summary = try await connection.summary(roomID: roomID, userID: creator.id)
            return (summary, created, created ? [] : joined)
        }
        // Every member's view changed: their next reads see the room (read-your-writes).
        for member in [creator.id] + others { db.wrote(by: member) }
        if result.created {
            await events.publish(.roomCreated(roomID: result.summary.room.id, participantIDs: [creator.id] + others))
        }
        for participant in result.rejoined {
            await events.publish(
                .participantJoined(roomID: participant.roomID, userID: participant.userID, userName: participant.userName))
        }
        return (result.summary, result.created)
    }

    /// Throws `.notFound` unless the room exists and is active, `.forbidden` unless the user
    /// is one of its active participants. Routes call it before looking at a request body.
    public func requireParticipant(roomID: Int64, userID: Int64) async throws {
        _ = try await db.primary.withConnection { try await $0.roomAccess(roomID: roomID, userID: userID) }
    }

    public func room(id roomID: Int64, for userID: Int64) async throws -> Room {
        try await db.read(for: userID) { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            return try Room(
                row: try await connection.queryRow(
                    """
                    SELECT \(unescaped: SQLColumns.room) FROM rooms r
                    JOIN room_participants p ON p.room_id = r.room_id AND p.user_id = \(userID)
                    WHERE r.room_id = \(roomID)
                    """))
        }
    }

    public func participants(roomID: Int64, for userID: Int64) async throws -> [Participant] {
        try await db.read(for: userID) { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            return try await connection.activeParticipants(roomID: roomID)
        }
    }

    /// Adds users to a group room (any participant may); users who had left become active again.
    public func addParticipants(roomID: Int64, userIDs: [Int64], by userID: Int64) async throws -> [Participant] {
        guard userIDs.count <= Self.maxIDsPerRequest else {
            throw ChatError.invalid("user_ids may name at most \(Self.maxIDsPerRequest) users")
        }
        let ids = uniqued(userIDs)
        guard !ids.isEmpty else { throw ChatError.invalid("user_ids must name at least one user") }
        let (participants, joined): ([Participant], [Participant]) = try await db.primary.withTransaction { connection in
            let access = try await connection.roomAccess(roomID: roomID, userID: userID, lock: .forUpdate)
            guard access.type == .group else {
                throw ChatError.notAllowed("Participants cannot be added to a direct room")
            }
            let known = try await connection.query(
                "SELECT user_id FROM users WHERE user_id = ANY(\(ids)) AND is_active")
            let knownIDs = Set(try known.map { try $0.decode(Int64.self, column: 0) })
            let unknown = ids.filter { !knownIDs.contains($0) }
            guard unknown.isEmpty else {
                throw ChatError.invalid("Unknown user ids: \(unknown.map(String.init).joined(separator: ", "))")
            }
            let before = try await connection.activeParticipants(roomID: roomID)
            let newIDs = ids.filter { id in !before.contains { $0.userID == id } }
            guard before.count + newIDs.count <= access.maxParticipants else {
                throw ChatError.notAllowed("The room is full (at most \(access.maxParticipants) participants)")
            }
            let joined = try await connection.activate(newIDs, in: roomID)
            if !joined.isEmpty {
                try await connection.execute("UPDATE rooms SET updated_at = now() WHERE room_id = \(roomID)")
            }
            return (try await connection.activeParticipants(roomID: roomID), joined)
        }
        db.wrote(by: userID)
        for participant in joined { db.wrote(by: participant.userID) }
        for participant in joined {
            await events.publish(
                .participantJoined(roomID: roomID, userID: participant.userID, userName: participant.userName))
        }
        return participants
    }

    /// Removes a participant: anyone may leave; only the room's creator may remove others.
    public func removeParticipant(roomID: Int64, userID target: Int64, by userID: Int64) async throws -> [Participant] {
        let (participants, removedName): ([Participant], String) = try await db.primary.withTransaction { connection in
            let access = try await connection.roomAccess(roomID: roomID, userID: userID, lock: .forUpdate)
            guard target == userID || access.createdBy == userID else {
                throw ChatError.forbidden("Only the room's creator can remove other participants")
            }
            guard
                let row = try await connection.queryOptionalRow(
                    """
                    WITH removed AS (
                        UPDATE room_participants SET is_active = false, left_at = now(),
                            removed_by = \(target == userID ? nil : userID)
                        WHERE room_id = \(roomID) AND user_id = \(target) AND is_active
                        RETURNING user_id
                    )
                    SELECT u.user_name FROM removed JOIN users u USING (user_id)
                    """)
            else { throw ChatError.notFound("Participant not found") }
            try await connection.execute("UPDATE rooms SET updated_at = now() WHERE room_id = \(roomID)")
            return (try await connection.activeParticipants(roomID: roomID), try row.decode(String.self, column: 0))
        }
        db.wrote(by: userID)
        db.wrote(by: target)
        await events.publish(.participantLeft(roomID: roomID, userID: target, userName: removedName))
        return participants
    }
}

/// The ids in their first order, without repeats.
func uniqued(_ ids: [Int64]) -> [Int64] {
    var seen = Set<Int64>()
    return ids.filter { seen.insert($0).inserted }
}

extension PostgresConnection {
    /// Inserts the direct room of a pair, or finds the active one that exists. The partial
    /// unique index makes concurrent creates for the same pair wait for each other.
    func createDirectRoom(
        name: String, nameIsDefault: Bool, description: String?, creator: Int64, low: Int64, high: Int64
    ) async throws -> (roomID: Int64, created: Bool) {
        for _ in 0..<5 {
            if let row = try await queryOptionalRow(
                """
                INSERT INTO rooms (room_name, name_is_default, room_type, room_description, created_by,
                    direct_user_low, direct_user_high)
                VALUES (\(name), \(nameIsDefault), 'direct', \(description), \(creator), \(low), \(high))
                ON CONFLICT (direct_user_low, direct_user_high) WHERE room_type = 'direct' AND is_active DO NOTHING
                RETURNING room_id
                """)
            {
                return (try row.decode(Int64.self, column: 0), true)
            }
            if let row = try await queryOptionalRow(
                """
                SELECT room_id FROM rooms
                WHERE room_type = 'direct' AND is_active AND direct_user_low = \(low) AND direct_user_high = \(high)
                """)
            {
                return (try row.decode(Int64.self, column: 0), false)
            }
            // The conflicting room was deactivated in between: try to insert again.
        }
        throw ChatError.conflict("The direct room changed concurrently, try again")
    }

    /// Makes the users active participants of the room: inserted, or reactivated when they
    /// had left (their read position moves to the room's newest message, so what was sent
    /// while they were away does not count as unread). Returns those who were not active.
    /// Rows are locked in user-id order so that concurrent calls cannot deadlock, and rows
    /// already active are not touched.
    func activate(_ userIDs: [Int64], in roomID: Int64) async throws -> [Participant] {
        guard !userIDs.isEmpty else { return [] }
        return try await query(
            """
            WITH newest AS (SELECT COALESCE(max(message_id), 0) AS id FROM messages WHERE room_id = \(roomID)),
            p AS (
                INSERT INTO room_participants (room_id, user_id, last_read_message_id)
                SELECT \(roomID), ids.user_id, 0 FROM unnest(\(userIDs.sorted())) AS ids(user_id)
                WHERE NOT EXISTS (SELECT 1 FROM room_participants a
                                  WHERE a.room_id = \(roomID) AND a.user_id = ids.user_id AND a.is_active)
                ORDER BY ids.user_id
                ON CONFLICT (room_id, user_id) DO UPDATE
                    SET is_active = true, left_at = NULL, removed_by = NULL, joined_at = now(),
                        last_read_message_id = GREATEST(room_participants.last_read_message_id, (SELECT id FROM newest))
                    WHERE NOT room_participants.is_active
                RETURNING *
            )
            SELECT \(unescaped: SQLColumns.participant) FROM p JOIN users u ON u.user_id = p.user_id ORDER BY p.id
            """
        ).map(Participant.init(row:))
    }

    func summary(roomID: Int64, userID: Int64) async throws -> RoomSummary {
        try RoomSummary(
            row: try await queryRow(
                """
                SELECT \(unescaped: SQLColumns.roomSummary)
                FROM room_participants p JOIN rooms r ON r.room_id = p.room_id
                WHERE p.room_id = \(roomID) AND p.user_id = \(userID)
                """))
    }

    func activeParticipants(roomID: Int64) async throws -> [Participant] {
        try await query(
            """
            SELECT \(unescaped: SQLColumns.participant)
            FROM room_participants p JOIN users u ON u.user_id = p.user_id
            WHERE p.room_id = \(roomID) AND p.is_active ORDER BY p.id
            """
        ).map(Participant.init(row:))
    }
}
