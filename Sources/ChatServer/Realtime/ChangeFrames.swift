import ChatCore
import NIOCore

/// The frames a room change becomes, and who receives each (API.md, "Real-time: WebSocket").
/// Rendered once per change, whatever the number of sockets that receive it.
struct ChangeFrame {
    enum Audience {
        /// Room sockets and user streams of the room.
        case everyone
        /// Room sockets only.
        case roomSockets
        /// A read receipt: room sockets, and the user streams of everyone but the reader.
        case receipt(reader: Int64)
        /// The reader's own user streams (their unread count after reading).
        case readerStreams(reader: Int64)

        func includes(_ session: SocketSession) -> Bool {
            switch (self, session.kind) {
            case (.everyone, _), (.roomSockets, .room), (.receipt, .room): true
            case (.receipt(let reader), .userStream): session.user.id != reader
            case (.readerStreams(let reader), .userStream): session.user.id == reader
            case (.roomSockets, .userStream), (.readerStreams, .room): false
            }
        }
    }

    /// The frame, encoded once and shared by every socket that receives it.
    var wire: WireFrame
    var seq: Int64
    var audience: Audience

    init(text: String, seq: Int64, audience: Audience) {
        self.wire = WireFrame(text: text)
        self.seq = seq
        self.audience = audience
    }

    static func frames(for change: RoomChange, files: FileURLs) -> [ChangeFrame] {
        let seq = change.seq
        switch change.event {
        case .messageCreated(let message):
            return [ChangeFrame(text: ServerFrame.message(message, files: files), seq: seq, audience: .everyone)]
        case .messageUpdated(let message):
            return [
                ChangeFrame(
                    text: ServerFrame.messageChange("message_updated", message, seq: seq, files: files), seq: seq,
                    audience: .roomSockets)
            ]
        case .messageDeleted(let message):
            return [
                ChangeFrame(
                    text: ServerFrame.messageChange("message_deleted", message, seq: seq, files: files), seq: seq,
                    audience: .roomSockets)
            ]
        case .messageRead(let reader, let receipts):
            let shared = ServerFrame.MessageRead(
                roomId: change.roomID, userId: reader.userID, userName: reader.userName, lastReadAt: reader.lastReadAt,
                lastReadMessageId: reader.lastReadMessageID, seq: seq)
            var own = shared
            own.unreadCount = reader.unreadCount
            // The reader's own user streams (their other devices) always learn the new
            // unread count; others only when the reader has read receipts on.
            let ownFrame = ChangeFrame(text: ServerFrame.encode(own), seq: seq, audience: .readerStreams(reader: reader.userID))
            guard receipts else { return [ownFrame] }
            return [
                ChangeFrame(text: ServerFrame.encode(shared), seq: seq, audience: .receipt(reader: reader.userID)), ownFrame,
            ]
        case .participantJoined(let userID, let userName), .participantLeft(let userID, let userName):
            let type: String
            if case .participantJoined = change.event { type = "participant_joined" } else { type = "participant_left" }
            return [
                ChangeFrame(
                    text: ServerFrame.encode(
                        ServerFrame.Participant(
                            type: type, roomId: change.roomID, userId: userID, userName: userName, seq: seq)),
                    seq: seq, audience: .roomSockets)
            ]
        }
    }
}

/// The frame a live notice (typing, presence) becomes in its room, and whose it is: every
/// room socket of the room receives it but that user's own.
struct LiveFrame {
    var wire: WireFrame
    var userID: Int64

    /// Nil for a room update, which each participant's user streams receive as that
    /// participant sees the room (`RoomPump`).
    init?(_ event: ChangeNotice.LiveEvent, roomID: Int64) {
        switch event {
        case .typing(let userID, let userName, let isTyping):
            self.userID = userID
            wire = WireFrame(
                text: ServerFrame.encode(
                    ServerFrame.Typing(roomId: roomID, userId: userID, userName: userName, isTyping: isTyping)))
        case .presence(let userID, let userName, let online):
            self.userID = userID
            wire = WireFrame(
                text: ServerFrame.encode(
                    ServerFrame.UserStatus(
                        roomId: roomID, userId: userID, userName: userName, status: online ? "online" : "offline")))
        case .roomUpdated:
            return nil
        }
    }
}
