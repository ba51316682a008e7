import Postgres

/// Deletes messages older than their room's retention period, for rooms with
/// `auto_delete_enabled`, in small batches (each its own short transaction).
public struct RetentionStore: Sendable {
    /// Advisory lock that lets one instance at a time run the job.
    public static let lockKey: Int64 = 7_262_531_002

    public struct Batch: Sendable, Equatable {
        public var deletedMessages: Int
        /// Stored files of the deleted messages, to remove from disk after commit.
        public var filePaths: [String]
    }

    let db: PostgresClient

    public init(db: PostgresClient) {
        self.db = db
    }

    /// Deletes up to `limit` expired messages, oldest first per room. Returns nil without
    /// doing anything when another instance holds the job's lock.
    public func deleteExpiredBatch(limit: Int) async throws -> Batch? {
        try await db.withTransaction { connection in
            let locked = try await connection.queryRow("SELECT pg_try_advisory_xact_lock(\(Self.lockKey))")
                .decode(Bool.self, column: 0)
            guard locked else { return nil }
            let rows = try await connection.query(
                """
                WITH doomed AS (
                    SELECT expired.message_id
                    FROM rooms r
                    CROSS JOIN LATERAL (
                        SELECT m.message_id FROM messages m
                        WHERE m.room_id = r.room_id
                          AND m.created_at < now() - make_interval(days => r.message_retention_days)
                        ORDER BY m.created_at LIMIT \(limit)
                    ) AS expired
                    WHERE r.auto_delete_enabled AND r.is_active
                    LIMIT \(limit)
                )
                DELETE FROM messages m USING doomed WHERE m.message_id = doomed.message_id
                RETURNING m.file_path, m.room_id, m.seq
                """)
            // A replay can no longer show these messages: cursors before them must resync.
            if !rows.isEmpty {
                let gone = try rows.map { (try $0.decode(Int64.self, "room_id"), try $0.decode(Int64.self, "seq")) }
                try await connection.execute(
                    "SELECT chat_raise_change_floors(\(gone.map(\.0)), \(gone.map(\.1)))")
            }
            return Batch(
                deletedMessages: rows.count, filePaths: try rows.compactMap { try $0.decode(String?.self, "file_path") })
        }
    }

    /// Deletes up to `limit` changes older than `days` from the rooms' change logs
    /// (`sql/0009`). Returns how many went, or nil when another instance holds the job's lock.
    public func pruneChanges(olderThan age: Duration, limit: Int) async throws -> Int? {
        try await db.withTransaction { connection in
            let locked = try await connection.queryRow("SELECT pg_try_advisory_xact_lock(\(Self.lockKey))")
                .decode(Bool.self, column: 0)
            guard locked else { return nil }
            return try await connection.queryRow(
                "SELECT chat_prune_changes(now() - make_interval(secs => \(Double(age.components.seconds))), \(limit))"
            ).decode(Int.self, column: 0)
        }
    }
}
