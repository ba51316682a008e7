import Postgres

/// What is known about a stored upload, looked up by its stored name.
public struct StoredFileInfo: Sendable, Equatable {
    public var contentType: String
    public var fileName: String
    /// Image messages (checked by their bytes) are shown inline; everything else downloads.
    public var isImage: Bool
}

/// Lookups of uploaded files referenced by live messages.
public struct FileStore: Sendable {
    let db: PostgresClient

    public init(db: PostgresClient) {
        self.db = db
    }

    /// The file of a message that is not deleted, or nil.
    public func file(storedName: String) async throws -> StoredFileInfo? {
        try await db.queryOptionalRow(
            """
            SELECT file_content_type, file_name, message_type FROM messages
            WHERE file_path = \(storedName) AND NOT is_deleted
            """
        ).map { row in
            StoredFileInfo(
                contentType: try row.decode(String?.self, "file_content_type") ?? "application/octet-stream",
                fileName: try row.decode(String?.self, "file_name") ?? "file",
                isImage: try row.decode(String.self, "message_type") == MessageType.image.rawValue)
        }
    }

    /// The names among `storedNames` that no message references.
    public func unreferenced(_ storedNames: [String]) async throws -> [String] {
        guard !storedNames.isEmpty else { return [] }
        return try await db.query(
            """
            SELECT n FROM unnest(\(storedNames)) AS n
            WHERE NOT EXISTS (SELECT 1 FROM messages WHERE file_path = n)
            """
        ).map { try $0.decode(String.self, column: 0) }
    }
}
