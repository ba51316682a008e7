import ChatCore
import Foundation
import Hummingbird

/// `GET /chat/rooms/{room_id}/search/` and `GET /chat/search/`.
struct SearchController {
    let search: SearchStore

    struct Hit: Encodable, Sendable {
        var messageId: Int64
        /// Only in results across rooms.
        var roomId: Int64?
        var senderName: String
        var messageContent: String
        var createdAt: Date
        var highlight: String

        init(_ hit: SearchHit, includeRoom: Bool) {
            messageId = hit.messageID
            roomId = includeRoom ? hit.roomID : nil
            senderName = hit.senderName
            messageContent = hit.content
            createdAt = hit.createdAt
            highlight = hit.highlight
        }
    }

    struct SearchResponse: ResponseEncodable, Sendable {
        var messages: [Hit]
        var totalCount: Int
        var hasMore: Bool
    }

    func addRoutes(to routes: Routes) {
        routes.on("rooms/:room_id/search", .get) { request, context in
            let user = try context.requireUser()
            let roomID = try context.pathID("room_id")
            let (query, page, size) = try Self.parameters(request)
            let result = try await search.search(roomID: roomID, userID: user.id, query: query, page: page, size: size)
            return SearchResponse(
                messages: result.hits.map { Hit($0, includeRoom: false) }, totalCount: result.totalCount,
                hasMore: result.hasMore)
        }
        routes.on("search", .get) { request, context in
            let user = try context.requireUser()
            let (query, page, size) = try Self.parameters(request)
            let result = try await search.searchAllRooms(userID: user.id, query: query, page: page, size: size)
            return SearchResponse(
                messages: result.hits.map { Hit($0, includeRoom: true) }, totalCount: result.totalCount,
                hasMore: result.hasMore)
        }
    }

    static func parameters(_ request: Request) throws -> (SearchQuery, Int, Int) {
        guard let text = try request.queryParameter("query") else {
            throw APIError.validation("query is required")
        }
        let query = try SearchQuery(text)
        let page = try request.queryInt("page", default: 1, in: 1...Int.max)!
        let size = try request.queryInt("size", default: 20, in: 1...SearchStore.maxPageSize)!
        return (query, page, size)
    }
}
