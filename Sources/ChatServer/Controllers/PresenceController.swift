import ChatCore
import Foundation
import Hummingbird

/// `GET /chat/rooms/{room_id}/online-status/`: who of the room has a socket open anywhere.
struct PresenceController {
    let presence: PresenceStore

    struct OnlineStatusResponse: Encodable, Sendable {
        var userId: Int64
        var userName: String
        var isOnline: Bool
        @Null var lastSeen: Date?
    }

    func addRoutes(to routes: Routes) {
        routes.on("rooms/:room_id/online-status", .get) { _, context in
            let user = try context.requireUser()
            let roomID = try context.pathID("room_id")
            let statuses = try await presence.status(roomID: roomID, for: user.id)
            return JSONArrayResponse(
                statuses.map {
                    OnlineStatusResponse(userId: $0.userID, userName: $0.userName, isOnline: $0.isOnline, lastSeen: $0.lastSeen)
                })
        }
    }
}

/// A top-level JSON array response.
struct JSONArrayResponse<Element: Encodable & Sendable>: ResponseEncodable, Sendable {
    var elements: [Element]

    init(_ elements: [Element]) {
        self.elements = elements
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(elements)
    }
}
