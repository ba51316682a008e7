import Foundation
import Postgres

/// Who has sockets open, shared by all instances through the database.
///
/// An instance registers itself, refreshes `heartbeat_at` every few seconds, and records
/// a row per (user, room) it holds at least one socket for (room 0: the user stream). A
/// row counts only while its instance's heartbeat is younger than that instance's `expiry`
/// (written with the heartbeat, `sql/0013`); any instance reaps the rows of instances that
/// stopped beating and announces who went offline.
/// Transitions of one user are serialised across instances with a transaction-scoped
/// advisory lock, so "first socket opened" / "last socket closed" is decided once.
public struct PresenceStore: Sendable {
    public struct Status: Sendable, Equatable {
        public var userID: Int64
        public var userName: String
        public var isOnline: Bool
        public var lastSeen: Date?
    }

    /// A user who lost their last live socket on a room.
    public struct WentOffline: Sendable, Equatable {
        public var userID: Int64
        public var userName: String
        public var roomID: Int64
    }

    let db: ChatDatabase
    public let instanceID: String
    public let expiry: Duration

    public init(db: ChatDatabase, instanceID: String, expiry: Duration) {
        self.db = db
        self.instanceID = instanceID
        self.expiry = expiry
    }

    private var expirySeconds: Double {
        expiry.inSeconds
    }

    /// The instance `i` still heartbeats (by its own expiry; one of an older version, which
    /// writes none, by this instance's): its sessions count.
    private var liveInstance: PostgresQuery {
        "i.heartbeat_at + coalesce(i.expires_after, make_interval(secs => \(expirySeconds))) > now()"
    }

    /// Registers this instance, or refreshes its heartbeat. Returns false when the row was
    /// missing (first call, or another instance reaped this one after a long stall); the
    /// caller then records its sessions again.
    @discardableResult
    public func heartbeat() async throws -> Bool {
        let updated = try await db.primary.execute(
            """
            UPDATE chat_instances SET heartbeat_at = now(), expires_after = make_interval(secs => \(expirySeconds))
            WHERE instance_id = \(instanceID)
            """)
        if updated == 1 { return true }
        try await db.primary.execute(
            """
            INSERT INTO chat_instances (instance_id, expires_after)
            VALUES (\(instanceID), make_interval(secs => \(expirySeconds))) ON CONFLICT DO NOTHING
            """)
        return false
    }

    /// Records that this instance holds a socket of the user on the room. Returns true when
    /// the row is new here and no other live instance holds one, i.e. when `online` is to be
    /// announced (a row already there was announced when it was written).
    public func opened(userID: Int64, roomID: Int64) async throws -> Bool {
        defer { db.wrote(by: userID) }
        return try await db.primary.withTransaction { connection in
            try await connection.execute("SELECT pg_advisory_xact_lock(\(Self.lockSpace), hashint8(\(userID)))")
            let row = try await connection.queryRow(
                """
                WITH mine AS (
                    INSERT INTO presence_sessions (instance_id, user_id, room_id)
                    VALUES (\(instanceID), \(userID), \(roomID)) ON CONFLICT DO NOTHING
                    RETURNING 1
                )
                SELECT EXISTS (SELECT 1 FROM mine) AS inserted, EXISTS (
                    SELECT 1 FROM presence_sessions s JOIN chat_instances i ON i.instance_id = s.instance_id
                    WHERE s.user_id = \(userID) AND s.room_id = \(roomID) AND s.instance_id <> \(instanceID)
                      AND \(liveInstance)) AS elsewhere
                """)
            return try row.decode(Bool.self, "inserted") && !(try row.decode(Bool.self, "elsewhere"))
        }
    }

    /// The (user, room) rows this instance holds, with the users' names (for reconciling
    /// them with the sockets it really has after a failed write or a stall).
    public func sessions() async throws -> [(userID: Int64, userName: String, roomID: Int64)] {
        try await db.primary.query(
            """
            SELECT s.user_id, u.user_name, s.room_id FROM presence_sessions s JOIN users u USING (user_id)
            WHERE s.instance_id = \(instanceID)
            """
        ).map { (try $0.decode(Int64.self, "user_id"), try $0.decode(String.self, "user_name"), try $0.decode(Int64.self, "room_id")) }
    }

    /// Records that this instance no longer holds a socket of the user on the room. Returns
    /// true when it held the row and no other live instance holds one (announce `offline`);
    /// `last_seen_at` is set when the user has no live socket left anywhere.
    public func closed(userID: Int64, roomID: Int64) async throws -> Bool {
        defer { db.wrote(by: userID) }
        return try await db.primary.withTransaction { connection in
            try await connection.execute("SELECT pg_advisory_xact_lock(\(Self.lockSpace), hashint8(\(userID)))")
            let deleted = try await connection.execute(
                """
                DELETE FROM presence_sessions
                WHERE instance_id = \(instanceID) AND user_id = \(userID) AND room_id = \(roomID)
                """)
            let row = try await connection.queryRow(
                """
                SELECT
                    EXISTS (SELECT 1 FROM presence_sessions s JOIN chat_instances i ON i.instance_id = s.instance_id
                        WHERE s.user_id = \(userID) AND s.room_id = \(roomID)
                          AND \(liveInstance)) AS in_room,
                    EXISTS (SELECT 1 FROM presence_sessions s JOIN chat_instances i ON i.instance_id = s.instance_id
                        WHERE s.user_id = \(userID)
                          AND \(liveInstance)) AS anywhere
                """)
            if !(try row.decode(Bool.self, "anywhere")) {
                try await connection.execute("UPDATE users SET last_seen_at = now() WHERE user_id = \(userID)")
            }
            let inRoom = try row.decode(Bool.self, "in_room")
            return deleted > 0 && !inRoom
        }
    }

    /// Deletes instances whose heartbeat expired, with their sessions, and returns the
    /// (user, room) pairs that thereby lost their last live socket. Safe to run on every
    /// instance at once (`SKIP LOCKED`).
    public func reapDeadInstances() async throws -> [WentOffline] {
        try await db.primary.withTransaction { connection in
            let dead = try await connection.query(
                """
                SELECT i.instance_id, i.heartbeat_at FROM chat_instances i
                WHERE NOT (\(liveInstance))
                ORDER BY i.instance_id FOR UPDATE SKIP LOCKED
                """
            ).map { try $0.decode((String, Date).self) }
            return try await remove(dead, on: connection)
        }
    }

    /// Deletes these instances (id, last heartbeat) with their sessions; returns who thereby
    /// went offline on which room.
    private func remove(_ dead: [(String, Date)], on connection: PostgresConnection) async throws -> [WentOffline] {
        guard !dead.isEmpty else { return [] }
        let deadIDs = dead.map(\.0)
        let sessions = try await connection.query(
            "SELECT DISTINCT user_id, room_id FROM presence_sessions WHERE instance_id = ANY(\(deadIDs))"
        ).map { try $0.decode((Int64, Int64).self) }
        // Lock the users in a fixed order (no deadlock with another reaper or a socket).
        for userID in Set(sessions.map(\.0)).sorted() {
            try await connection.execute("SELECT pg_advisory_xact_lock(\(Self.lockSpace), hashint8(\(userID)))")
        }
        try await connection.execute("DELETE FROM chat_instances WHERE instance_id = ANY(\(deadIDs))")
        guard !sessions.isEmpty else { return [] }
        let lastBeat = dead.map(\.1).max()!
        try await connection.execute(
            """
            UPDATE users u SET last_seen_at = GREATEST(u.last_seen_at, \(lastBeat))
            WHERE u.user_id = ANY(\(sessions.map(\.0)))
              AND NOT EXISTS (SELECT 1 FROM presence_sessions s WHERE s.user_id = u.user_id)
            """)
        return try await connection.query(
            """
            SELECT g.user_id, u.user_name, g.room_id
            FROM unnest(\(sessions.map(\.0)), \(sessions.map(\.1))) AS g (user_id, room_id)
            JOIN users u ON u.user_id = g.user_id
            WHERE g.room_id <> 0 AND NOT EXISTS (
                SELECT 1 FROM presence_sessions s JOIN chat_instances i ON i.instance_id = s.instance_id
                WHERE s.user_id = g.user_id AND s.room_id = g.room_id
                  AND \(liveInstance))
            """
        ).map {
            WentOffline(
                userID: try $0.decode(Int64.self, "user_id"), userName: try $0.decode(String.self, "user_name"),
                roomID: try $0.decode(Int64.self, "room_id"))
        }
    }

    /// Removes this instance and its sessions: at graceful shutdown (its sockets have closed),
    /// and at start, where rows left by a previous process with the same INSTANCE_ID are
    /// stale. Returns who thereby went offline on which room, to be announced.
    public func unregister() async throws -> [WentOffline] {
        try await db.primary.withTransaction { connection in
            let mine = try await connection.query(
                "SELECT instance_id, heartbeat_at FROM chat_instances WHERE instance_id = \(instanceID) FOR UPDATE"
            ).map { try $0.decode((String, Date).self) }
            return try await remove(mine, on: connection)
        }
    }

    /// Online status of every active participant of the room (the caller must be one).
    public func status(roomID: Int64, for userID: Int64) async throws -> [Status] {
        try await db.read(for: userID) { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            return try await connection.query(
                """
                SELECT p.user_id, u.user_name,
                    EXISTS (SELECT 1 FROM presence_sessions s JOIN chat_instances i ON i.instance_id = s.instance_id
                        WHERE s.user_id = p.user_id
                          AND \(liveInstance)) AS is_online,
                    u.last_seen_at, now() AS now
                FROM room_participants p JOIN users u ON u.user_id = p.user_id
                WHERE p.room_id = \(roomID) AND p.is_active
                ORDER BY p.joined_at, p.user_id
                """
            ).map { row in
                let online = try row.decode(Bool.self, "is_online")
                return Status(
                    userID: try row.decode(Int64.self, "user_id"), userName: try row.decode(String.self, "user_name"),
                    isOnline: online,
                    lastSeen: online ? try row.decode(Date.self, "now") : try row.decode(Date?.self, "last_seen_at"))
            }
        }
    }

    /// Advisory lock namespace of presence transitions ("pres").
    static let lockSpace: Int32 = 0x7072_6573
}
