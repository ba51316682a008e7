import Postgres

/// What is known about a stored upload, looked up by its stored name.
public struct StoredFileInfo: Sendable, Equatable {
    public var contentType: String
    public var fileName: String
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
            SELECT file_content_type, file_name FROM messages
            WHERE file_path = \(storedName) AND NOT is_deleted
            """
        ).map { row in
            StoredFileInfo(
                contentType: try row.decode(String?.self, "file_content_type") ?? "application/octet-stream",
                fileName: try row.decode(String?.self, "file_name") ?? "file")
        }
    }
}
