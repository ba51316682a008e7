import ChatCore
import Hummingbird

/// `/chat/rooms...`: room list, creation, detail and membership.
struct RoomController {
    let rooms: RoomStore

    struct CreateRoomRequest: Decodable {
        var roomName: String?
        var roomType: String
        var roomDescription: String?
        var participantIds: [Int64]?
        var maxParticipants: Int?
    }

    struct AddParticipantsRequest: Decodable {
        var userIds: [Int64]
    }

    func addRoutes(to routes: Routes) {
        routes.on("rooms", .get) { request, context in
            let user = try context.requireUser()
            let page = try request.queryInt("page", default: 1, in: 1...Int.max)!
            let size = try request.queryInt("size", default: 100, in: 1...500)!
            let (rooms, total) = try await rooms.rooms(for: user.id, page: page, size: size)
            return RoomListResponse(rooms: rooms.map(RoomSummaryResponse.init), totalCount: total)
        }
        routes.on("rooms", .post) { request, context in
            let user = try context.requireUser()
            let body = try await request.decodeJSON(CreateRoomRequest.self, context: context)
            guard let type = RoomType(rawValue: body.roomType) else {
                throw APIError.validation("room_type must be 'direct' or 'group'")
            }
            let new = NewRoom(
                name: body.roomName, type: type, description: body.roomDescription,
                participantIDs: body.participantIds ?? [], maxParticipants: body.maxParticipants)
            let (summary, created) = try await rooms.create(new, by: user)
            return EditedResponse(status: created ? .created : .ok, response: RoomSummaryResponse(summary))
        }
        routes.on("rooms/:room_id", .get) { _, context in
            let user = try context.requireUser()
            return RoomDetailResponse(try await rooms.room(id: try context.pathID("room_id"), for: user.id))
        }
        routes.on("rooms/:room_id/participants", .get) { _, context in
            let user = try context.requireUser()
            return ParticipantListResponse(
                try await rooms.participants(roomID: try context.pathID("room_id"), for: user.id))
        }
        routes.on("rooms/:room_id/participants", .post) { request, context in
            let user = try context.requireUser()
            let roomID = try context.pathID("room_id")
            try await rooms.requireParticipant(roomID: roomID, userID: user.id)
            let body = try await request.decodeJSON(AddParticipantsRequest.self, context: context)
            let participants = try await rooms.addParticipants(roomID: roomID, userIDs: body.userIds, by: user.id)
            return ParticipantListResponse(participants)
        }
        routes.on("rooms/:room_id/participants/:user_id", .delete) { _, context in
            let user = try context.requireUser()
            let participants = try await rooms.removeParticipant(
                roomID: try context.pathID("room_id"), userID: try context.pathID("user_id"), by: user.id)
            return ParticipantListResponse(participants)
        }
    }
}
