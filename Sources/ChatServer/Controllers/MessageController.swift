import ChatCore
import Foundation
import Hummingbird

/// `/chat/rooms/{room_id}/messages...` and `/read`.
struct MessageController {
    let messages: MessageStore
    let rooms: RoomStore
    let files: FileURLs
    let storage: UploadStorage
    /// Messages per user (REST and WebSocket share it).
    let sends: RateLimiter<Int64>

    struct SendMessageRequest: Decodable, FlatJSONDecodable, Equatable {
        var messageContent: String?
        var messageType: String?
        var replyToMessageId: Int64?
        var clientMessageId: String?

        static let keys: Set<String> = ["message_content", "message_type", "reply_to_message_id", "client_message_id"]

        init?(flatJSON fields: [String: FlatJSON.Value]) {
            guard fields.keys.allSatisfy(Self.keys.contains), let content = fields.optionalString("message_content"),
                let type = fields.optionalString("message_type"), let replyTo = fields.optionalInteger("reply_to_message_id"),
                let clientID = fields.optionalString("client_message_id")
            else { return nil }
            (messageContent, messageType, replyToMessageId, clientMessageId) = (content, type, replyTo, clientID)
        }
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
            try sends.admitSend(by: user.id)
            if let contentType = request.headers[.contentType], contentType.lowercased().hasPrefix("multipart/") {
                // Checked before the upload streams to disk.
                try await rooms.requireParticipant(roomID: roomID, userID: user.id)
                let upload = try await MultipartUpload.receive(request, storage: storage)
                return try await sendUpload(upload, roomID: roomID, senderID: user.id)
            }
            // The send statement checks the room and the membership itself, so a valid send is
            // one round trip. An invalid one looks at the room first: 404 and 403 win over 422.
            let message: ValidatedMessage
            do {
                let body = try await request.decodeJSON(SendMessageRequest.self, context: context)
                let type = try Self.messageType(body.messageType)
                guard !type.carriesFile else {
                    throw APIError.validation("\(type.rawValue) messages must be sent as multipart/form-data with a file")
                }
                message = try messages.validate(
                    MessageDraft(
                        content: body.messageContent, type: type, replyToMessageID: body.replyToMessageId,
                        clientMessageID: body.clientMessageId),
                    roomID: roomID, senderID: user.id)
            } catch {
                try await rooms.requireParticipant(roomID: roomID, userID: user.id)
                throw error
            }
            let outcome = try await messages.send(message)
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
            if let stored = outcome.removedFilePath { await storage.remove(storedName: stored) }
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

    /// Stores an uploaded file under a generated name and sends its message; the file is
    /// removed again when anything fails, so a rejected upload leaves nothing behind.
    func sendUpload(_ upload: MultipartUpload, roomID: Int64, senderID: Int64) async throws
        -> EditedResponse<MessageResponse>
    {
        guard let temporary = upload.file else {
            throw APIError.validation("file is required")
        }
        var committedName: String?
        do {
            let type = try Self.messageType(upload.fields["message_type"] ?? MessageType.file.rawValue)
            let originalName = UploadStorage.sanitizedFileName(upload.fileName)
            let contentType: String
            let fileExtension: String?
            switch type {
            case .image:
                guard let image = FileSignature.image(temporary.prefix) else {
                    throw APIError.validation("An image must be a JPEG, PNG, GIF or WebP file")
                }
                (contentType, fileExtension) = (image.contentType, image.fileExtension)
            case .voice:
                guard let audio = FileSignature.audio(temporary.prefix) else {
                    throw APIError.validation("A voice message must be an audio file (Ogg, MP3, M4A, WAV, WebM, AMR, AAC)")
                }
                (contentType, fileExtension) = (audio, UploadStorage.fileExtension(of: originalName))
            case .file:
                if let image = FileSignature.image(temporary.prefix) {
                    (contentType, fileExtension) = (image.contentType, image.fileExtension)
                } else {
                    contentType = Self.safeContentType(upload.declaredContentType)
                    fileExtension = UploadStorage.fileExtension(of: originalName)
                }
            case .text, .location:
                throw APIError.validation("multipart uploads must have message_type image, file or voice")
            }
            let replyTo = try upload.fields["reply_to_message_id"].map { text -> Int64 in
                guard let id = Int64(text) else { throw APIError.validation("reply_to_message_id: expected an integer") }
                return id
            }
            let name = UploadStorage.randomName(extension: fileExtension)
            try await storage.commit(temporary, as: name)
            committedName = name
            let caption = upload.fields["message_content"].flatMap { $0.isEmpty ? nil : $0 }
            let outcome = try await messages.send(
                roomID: roomID, senderID: senderID,
                draft: MessageDraft(
                    content: caption, type: type, replyToMessageID: replyTo,
                    clientMessageID: upload.fields["client_message_id"],
                    file: StoredFile(path: name, originalName: originalName, size: Int64(temporary.size), contentType: contentType)))
            if !outcome.created { await storage.remove(storedName: name) }  // a repeat: keep the first file only
            return EditedResponse(
                status: outcome.created ? .created : .ok, response: MessageResponse(outcome.message, files: files))
        } catch {
            await temporary.discard()
            if let committedName { await storage.remove(storedName: committedName) }
            throw error
        }
    }

    /// The declared type of a generic file if it is a plain `type/subtype` that browsers do
    /// not render as markup or script, and not an image type (images are recognised by
    /// their bytes); else `application/octet-stream`.
    static func safeContentType(_ declared: String?) -> String {
        guard let declared = declared?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased(),
            declared.count <= 100
        else { return "application/octet-stream" }
        let parts = declared.split(separator: "/", omittingEmptySubsequences: false)
        let token: (Substring) -> Bool = { part in
            !part.isEmpty && part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "!#$&^_.+-".contains($0)) }
        }
        guard parts.count == 2, token(parts[0]), token(parts[1]), parts[0] != "image",
            !["html", "xml", "svg", "script", "xsl"].contains(where: { declared.contains($0) })
        else { return "application/octet-stream" }
        return declared
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

extension RateLimiter<Int64> {
    /// Takes one send from the user's budget, or throws 429.
    func admitSend(by userID: Int64) throws {
        if let wait = take(userID) { throw APIError.rateLimited(wait, "Too many messages; slow down") }
    }
}
