import Foundation
import Postgres

/// One search hit.
public struct SearchHit: Sendable, Equatable {
    public var messageID: Int64
    public var roomID: Int64
    public var senderName: String
    public var content: String
    public var createdAt: Date
    public var highlight: String
}

public struct SearchPage: Sendable, Equatable {
    public var hits: [SearchHit]
    public var totalCount: Int
    public var hasMore: Bool
}

/// Full-text search over messages (see `SearchQuery` and `sql/0002_search.sql`).
public struct SearchStore: Sendable {
    public static let maxPageSize = 100

    let db: ChatDatabase

    public init(db: ChatDatabase) {
        self.db = db
    }

    /// Searches one room (the caller must be a participant), newest first.
    public func search(roomID: Int64, userID: Int64, query: SearchQuery, page: Int, size: Int) async throws
        -> SearchPage
    {
        try await db.read(for: userID) { connection in
            _ = try await connection.roomAccess(roomID: roomID, userID: userID)
            return try await connection.search(scope: "m.room_id = \(roomID)", query: query, page: page, size: size)
        }
    }

    /// Searches every active room the caller is an active participant of, newest first.
    public func searchAllRooms(userID: Int64, query: SearchQuery, page: Int, size: Int) async throws -> SearchPage {
        try await db.read(for: userID) { connection in
            // The room ids go in as an array the planner can see (a subquery here was
            // estimated at one room and made it run the GIN scan once per room).
            let roomIDs = try await connection.query(
                """
                SELECT p.room_id FROM room_participants p JOIN rooms r ON r.room_id = p.room_id
                WHERE p.user_id = \(userID) AND p.is_active AND r.is_active
                """
            ).map { try $0.decode(Int64.self, column: 0) }
            if roomIDs.isEmpty { return SearchPage(hits: [], totalCount: 0, hasMore: false) }
            return try await connection.search(
                scope: "m.room_id = ANY(\(roomIDs))", query: query, page: page, size: size)
        }
    }
}

extension PostgresConnection {
    /// `scope` is a SQL condition on `m` whose values are already bound.
    fileprivate func search(scope: PostgresQuery, query parsed: SearchQuery, page: Int, size: Int) async throws
        -> SearchPage
    {
        let nothing = SearchPage(hits: [], totalCount: 0, hasMore: false)
        if parsed.matchesNothing { return nothing }
        // Split and lower-case the query exactly as the index did.
        let words = try await self.query("SELECT unnest(chat_search_words(\(parsed.text)))").map {
            try $0.decode(String.self, column: 0)
        }
        let query = parsed.withWords(words)
        if query.matchesNothing { return nothing }
        let condition: PostgresQuery = """
            \(scope) AND NOT m.is_deleted
            AND m.search_document @@ \(query.tsquery)::tsquery
            AND NOT EXISTS (SELECT 1 FROM unnest(\(query.infixTerms)) AS t(term)
                            WHERE strpos(lower(m.message_content), t.term) = 0)
            """
        // One pass over the matches: the GIN index finds them (materialised, so the planner
        // cannot walk message_id backwards filtering row by row, which is fast for common
        // words in busy rooms but scans whole tables for rare ones), then the count and
        // the page come from the same set. Unnamed statement: planned for these words.
        let rows = try await self.query(
            """
            WITH hits AS MATERIALIZED (SELECT m.message_id FROM messages m WHERE \(condition)),
            page AS (SELECT message_id FROM hits ORDER BY message_id DESC LIMIT \(size + 1) OFFSET \(offset(page: page, size: size)))
            SELECT (SELECT count(*) FROM hits) AS total_count, m.message_id, m.room_id, u.user_name AS sender_name,
                m.message_content, m.created_at
            FROM (SELECT 1) AS one
            LEFT JOIN (page JOIN messages m ON m.message_id = page.message_id JOIN users u ON u.user_id = m.sender_id) ON true
            ORDER BY m.message_id DESC
            """, preparation: .unnamed)
        let total = try rows.first?.decode(Int.self, "total_count") ?? 0
        let found = rows.filter { !$0.isNull(1) }
        let hits = try found.prefix(size).map { row in
            let content = try row.decode(String.self, "message_content")
            return SearchHit(
                messageID: try row.decode(Int64.self, "message_id"), roomID: try row.decode(Int64.self, "room_id"),
                senderName: try row.decode(String.self, "sender_name"), content: content,
                createdAt: try row.decode(Date.self, "created_at"), highlight: query.highlight(in: content))
        }
        return SearchPage(hits: hits, totalCount: total, hasMore: found.count > size)
    }
}
