import ChatCore
import Hummingbird

/// `/chat/rooms/{room_id}/settings/`.
struct SettingsController {
    let settings: SettingsStore
    let rooms: RoomStore

    struct SettingsResponse: ResponseEncodable {
        var roomId: Int64
        var notificationEnabled: Bool
        var messageRetentionDays: Int
        var autoDeleteEnabled: Bool
        var readReceiptEnabled: Bool

        init(_ settings: RoomSettings) {
            roomId = settings.roomID
            notificationEnabled = settings.notificationEnabled
            messageRetentionDays = settings.messageRetentionDays
            autoDeleteEnabled = settings.autoDeleteEnabled
            readReceiptEnabled = settings.readReceiptEnabled
        }
    }

    /// Every field optional: only those present change (JSON null counts as absent).
    struct UpdateRequest: Decodable {
        var notificationEnabled: Bool?
        var readReceiptEnabled: Bool?
        var messageRetentionDays: Int?
        var autoDeleteEnabled: Bool?
    }

    func addRoutes(to routes: Routes) {
        routes.on("rooms/:room_id/settings", .get) { _, context in
            let user = try context.requireUser()
            return SettingsResponse(try await settings.settings(roomID: try context.pathID("room_id"), userID: user.id))
        }
        routes.on("rooms/:room_id/settings", .put) { request, context in
            let user = try context.requireUser()
            let roomID = try context.pathID("room_id")
            try await rooms.requireParticipant(roomID: roomID, userID: user.id)
            let body = try await request.decodeJSON(UpdateRequest.self, context: context)
            let updated = try await settings.update(
                roomID: roomID, userID: user.id,
                change: RoomSettingsChange(
                    notificationEnabled: body.notificationEnabled, readReceiptEnabled: body.readReceiptEnabled,
                    messageRetentionDays: body.messageRetentionDays, autoDeleteEnabled: body.autoDeleteEnabled))
            return SettingsResponse(updated)
        }
    }
}
