import ChatCore
import Hummingbird

/// `/chat/rooms/{room_id}/messages...` and `/read`.
struct MessageController {
    let messages: MessageStore
    let rooms: RoomStore
    let files: FileURLs

    struct SendMessageRequest: Decodable {
        var messageContent: String?
        var messageType: String?
        var replyToMessageId: Int64?
        var clientMessageId: String?
    }

    struct EditMessageRequest: Decodable {
        var messageContent: String?
    }

    struct ReadRequest: Decodable {
        var messageId: Int64?
    }

    func addRoutes(to routes: Routes) {
        routes.on("rooms/:room_id/messages", .get) { request, context in
            let user = try context.requireUser()
            let roomID = try context.pathID("room_id")
            let size = try request.queryInt("size", default: 50, in: 1...MessageStore.maxPageSize)!
            let page = try request.queryInt("page", default: 1, in: 1...Int.max)!
            let window: MessageWindow
            switch (try request.queryID("before_id"), try request.queryID("after_id")) {
            case (.some, .some): throw APIError.validation("before_id and after_id cannot be combined")
            case (.some(let before), nil): window = .before(id: before, size: size)
            case (nil, .some(let after)): window = .after(id: after, size: size)
            case (nil, nil): window = .page(page: page, size: size)
            }
            let result = try await messages.messages(roomID: roomID, for: user.id, window: window)
            return MessageListResponse(
                messages: result.messages.map { MessageResponse($0, files: files) }, totalCount: result.totalCount,
                hasMore: result.hasMore)
        }
        routes.on("rooms/:room_id/messages", .post) { request, context in
            let user = try context.requireUser()
            let roomID = try context.pathID("room_id")
            try await rooms.requireParticipant(roomID: roomID, userID: user.id)
            if let contentType = request.headers[.contentType], contentType.lowercased().hasPrefix("multipart/") {
                throw APIError.validation("File uploads (multipart/form-data) are not supported yet")
            }
            let body = try await request.decodeJSON(SendMessageRequest.self, context: context)
            let type = try Self.messageType(body.messageType)
            guard !type.carriesFile else {
                throw APIError.validation("\(type.rawValue) messages must be sent as multipart/form-data with a file")
            }
            let outcome = try await messages.send(
                roomID: roomID, senderID: user.id,
                draft: MessageDraft(
                    content: body.messageContent, type: type, replyToMessageID: body.replyToMessageId,
                    clientMessageID: body.clientMessageId))
            return EditedResponse(
                status: outcome.created ? .created : .ok, response: MessageResponse(outcome.message, files: files))
        }
        routes.on("rooms/:room_id/messages/:message_id", .put) { request, context in
            let user = try context.requireUser()
            let (roomID, messageID) = (try context.pathID("room_id"), try context.pathID("message_id"))
            try await rooms.requireParticipant(roomID: roomID, userID: user.id)
            let body = try await request.decodeJSON(EditMessageRequest.self, context: context)
            let message = try await messages.edit(
                roomID: roomID, messageID: messageID, by: user.id, content: body.messageContent)
            return MessageResponse(message, files: files)
        }
        routes.on("rooms/:room_id/messages/:message_id", .delete) { _, context in
            let user = try context.requireUser()
            let outcome = try await messages.delete(
                roomID: try context.pathID("room_id"), messageID: try context.pathID("message_id"), by: user.id)
            return MessageResponse(outcome.message, files: files)
        }
        routes.on("rooms/:room_id/read", .post) { request, context in
            let user = try context.requireUser()
            let roomID = try context.pathID("room_id")
            try await rooms.requireParticipant(roomID: roomID, userID: user.id)
            let body = try await request.decodeJSON(ReadRequest.self, context: context, allowEmpty: true)
            let state = try await messages.markRead(roomID: roomID, userID: user.id, upTo: body?.messageId)
            return ReadResponse(
                roomId: state.roomID, userId: state.userID, lastReadAt: state.lastReadAt, unreadCount: state.unreadCount)
        }
    }

    static func messageType(_ raw: String?) throws -> MessageType {
        guard let raw else { return .text }
        guard let type = MessageType(rawValue: raw) else {
            throw APIError.validation(
                "Unsupported message_type '\(raw)'; use one of \(MessageType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return type
    }
}
