import Foundation
import Postgres

/// A hint that something changed, sent between instances over PostgreSQL NOTIFY (channel
/// `ChangeNotice.channel`, payload: a JSON array of notices). Receivers read the facts from
/// the tables; a notice only carries what is not stored (typing, presence transitions) or
/// what saves a query (names). The triggers of `sql/0004_realtime.sql` write the same shape.
public struct ChangeNotice: Sendable, Equatable, Codable {
    public static let channel = "chat_events"
    /// PostgreSQL rejects payloads of 8000 bytes or more; batches stay below this.
    public static let maxPayloadBytes = 7900

    public enum Kind: String, Sendable, Codable {
        /// Room `r` has new messages.
        case message = "msg"
        /// Message `m` of room `r` was edited / deleted.
        case updated = "upd"
        case deleted = "del"
        /// User `u` read room `r` up to message `m` at `at`; `rr`: read receipts on; `c`: unread count.
        case read
        /// User `u` joined / left room `r`.
        case joined = "join"
        case left = "leave"
        /// Room `r` was created.
        case roomCreated = "room"
        /// Room `r`'s name or description changed (announced by a trigger, `sql/0008`).
        case roomUpdated = "room_upd"
        /// User `u` was deactivated (a trigger, `sql/0008`; `r` is 0): their sockets close.
        case userDeactivated = "user_off"
        /// User `u` is typing (`v`) in room `r`.
        case typing
        /// User `u` came online / went offline (`v`) on room `r`.
        case status
    }

    /// Typing, presence and room updates are not in the room's change sequence: the notice
    /// is the event. Every other room notice is a wake-up ("read the changes of room `r`").
    public var isLiveOnly: Bool {
        switch kind {
        case .typing, .status, .roomUpdated: true
        default: false
        }
    }

    public var kind: Kind
    public var roomID: Int64
    public var messageID: Int64?
    public var userID: Int64?
    public var userName: String?
    public var flag: Bool?
    public var at: Date?
    public var count: Int?
    public var receipts: Bool?

    enum CodingKeys: String, CodingKey {
        case kind = "k", roomID = "r", messageID = "m", userID = "u", userName = "n", flag = "v", at, count = "c"
        case receipts = "rr"
    }

    public init(
        _ kind: Kind, roomID: Int64, messageID: Int64? = nil, userID: Int64? = nil, userName: String? = nil,
        flag: Bool? = nil, at: Date? = nil, count: Int? = nil, receipts: Bool? = nil
    ) {
        self.kind = kind
        self.roomID = roomID
        self.messageID = messageID
        self.userID = userID
        self.userName = userName
        self.flag = flag
        self.at = at
        self.count = count
        self.receipts = receipts
    }

    /// The notices that announce a committed change.
    public init(_ event: ChatEvent) {
        switch event {
        case .roomCreated(let roomID, _):
            self.init(.roomCreated, roomID: roomID)
        case .messageCreated(let message):
            self.init(.message, roomID: message.roomID)
        case .messageUpdated(let message):
            self.init(.updated, roomID: message.roomID, messageID: message.id)
        case .messageDeleted(let message):
            self.init(.deleted, roomID: message.roomID, messageID: message.id)
        case .messageRead(let state):
            self.init(
                .read, roomID: state.roomID, messageID: state.lastReadMessageID, userID: state.userID,
                userName: state.userName, at: state.lastReadAt, count: state.unreadCount,
                receipts: state.readReceiptsEnabled)
        case .participantJoined(let roomID, let userID, let userName):
            self.init(.joined, roomID: roomID, userID: userID, userName: userName)
        case .participantLeft(let roomID, let userID, let userName):
            self.init(.left, roomID: roomID, userID: userID, userName: userName)
        }
    }

    /// Packs notices into as few payloads as possible, each under `maxPayloadBytes`, in order.
    /// Repeated `message` wake-ups of one room within a payload are sent once. A notice that
    /// alone is too large (a user name cannot make it so today) is dropped. `end` is the index
    /// of the first notice after each payload, so a sender that fails part-way knows which
    /// notices are still unsent.
    public static func batches(_ notices: [ChangeNotice]) -> [(payload: String, end: Int)] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(PostgresTimestamp.format(date))
        }
        var batches: [(payload: String, end: Int)] = []
        var current: [String] = []
        var currentBytes = 2
        var wokenRooms: Set<Int64> = []
        for (index, notice) in notices.enumerated() {
            if notice.kind == .message, wokenRooms.contains(notice.roomID) { continue }
            guard let data = try? encoder.encode(notice), data.count + 2 < maxPayloadBytes else { continue }
            if currentBytes + data.count + 1 > maxPayloadBytes {
                batches.append(("[" + current.joined(separator: ",") + "]", index))
                current = []
                currentBytes = 2
                wokenRooms = []
            }
            if notice.kind == .message { wokenRooms.insert(notice.roomID) }
            current.append(String(decoding: data, as: UTF8.self))
            currentBytes += data.count + 1
        }
        if !current.isEmpty { batches.append(("[" + current.joined(separator: ",") + "]", notices.count)) }
        return batches
    }

    /// Reads a payload written by `batches` or by the SQL triggers. Throws only when
    /// the payload is not a JSON array.
    public static func decodeBatch(_ payload: String) throws -> [ChangeNotice] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = PostgresTimestamp.parse(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "bad timestamp \(text)")
            }
            return date
        }
        return try decoder.decode([Lenient].self, from: Data(payload.utf8)).compactMap(\.notice)
    }

    /// One element of a batch: a notice of a kind this version does not know (sent by a
    /// newer instance during a rolling upgrade) is skipped, not the whole batch.
    private struct Lenient: Decodable {
        var notice: ChangeNotice?

        init(from decoder: any Decoder) throws {
            notice = try? ChangeNotice(from: decoder)
        }
    }
}
