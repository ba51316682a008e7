import Foundation
import Postgres

/// A hint that something changed, sent between instances over PostgreSQL NOTIFY (channel
/// `ChangeNotice.channel`, payload: a JSON array of notices). What a room's change sequence
/// holds (messages, edits, deletes, read marks, joins, leaves) is read from the tables; a
/// notice of it only says which room to read. A notice carries facts only where they are not
/// stored (typing, presence) or tell a receiver who else must hear (a join, a new room).
public enum ChangeNotice: Sendable, Hashable {
    public static let channel = "chat_events"
    /// PostgreSQL rejects payloads of 8000 bytes or more; batches stay below this.
    public static let maxPayloadBytes = 7900

    /// Room `roomID`'s change sequence has new entries: read them from its cursor.
    case roomChanged(roomID: Int64)
    /// `userID` joined `roomID`: a change of the room, and the room enters the user's list.
    case joined(roomID: Int64, userID: Int64)
    /// A new room: it enters its participants' lists.
    case roomCreated(roomID: Int64)
    /// The user was deactivated (by psql, `sql/0008`): their sockets close.
    case userDeactivated(userID: Int64)
    /// Not in the room's change sequence: the notice is the event.
    case live(roomID: Int64, LiveEvent)

    public enum LiveEvent: Sendable, Hashable {
        case typing(userID: Int64, userName: String, isTyping: Bool)
        case presence(userID: Int64, userName: String, online: Bool)
        /// The room's name or description changed (a trigger, `sql/0008`).
        case roomUpdated
    }

    /// Whether a second copy of the notice says nothing the first did not: true for every
    /// notice that asks the receiver to read something (it reads the latest state); false for
    /// typing and presence, whose states alternate.
    public var isIdempotent: Bool {
        switch self {
        case .live(_, .typing), .live(_, .presence): false
        default: true
        }
    }

    /// The notice that announces a committed change.
    public init(_ event: ChatEvent) {
        switch event {
        case .roomCreated(let roomID, _):
            self = .roomCreated(roomID: roomID)
        case .messageCreated(let message), .messageUpdated(let message), .messageDeleted(let message):
            self = .roomChanged(roomID: message.roomID)
        case .messageRead(let state):
            self = .roomChanged(roomID: state.roomID)
        case .participantJoined(let roomID, let userID, _):
            self = .joined(roomID: roomID, userID: userID)
        case .participantLeft(let roomID, _, _):
            self = .roomChanged(roomID: roomID)
        }
    }

    /// Packs notices into as few payloads as possible, each under `maxPayloadBytes`, in order.
    /// An idempotent notice repeated within a payload is sent once (the read its first copy
    /// causes happens after the payload arrived, so it sees what the second announced). A notice that alone is too large (a user name
    /// cannot make it so today) is dropped. `end` is the index of the first notice after each
    /// payload, so a sender that fails part-way knows which notices are still unsent.
    public static func batches(_ notices: [ChangeNotice]) -> [(payload: String, end: Int)] {
        let encoder = JSONEncoder()
        var batches: [(payload: String, end: Int)] = []
        var current: [String] = []
        var currentBytes = 2
        var inPayload: Set<ChangeNotice> = []
        for (index, notice) in notices.enumerated() {
            if notice.isIdempotent, inPayload.contains(notice) { continue }
            guard let data = try? encoder.encode(Wire(notice)), data.count + 2 < maxPayloadBytes else { continue }
            if currentBytes + data.count + 1 > maxPayloadBytes {
                batches.append(("[" + current.joined(separator: ",") + "]", index))
                current = []
                currentBytes = 2
                inPayload = []
            }
            inPayload.insert(notice)
            current.append(String(decoding: data, as: UTF8.self))
            currentBytes += data.count + 1
        }
        if !current.isEmpty { batches.append(("[" + current.joined(separator: ",") + "]", notices.count)) }
        return batches
    }

    /// Reads a payload written by `batches` or by the SQL triggers. Throws only when the
    /// payload is not a JSON array; an element this version cannot read (a kind sent by a
    /// newer instance during a rolling upgrade) is skipped, not the whole batch.
    public static func decodeBatch(_ payload: String) throws -> [ChangeNotice] {
        var payload = payload
        let fast = payload.withUTF8 { FlatJSON.parseArray(UnsafeRawBufferPointer($0)) }.flatMap(Self.notices(flatJSON:))
        return try fast ?? decodeBatchWithFoundation(payload)
    }

    /// `decodeBatch` by `JSONDecoder`: what the fast path is checked against, and what reads
    /// any payload the fast path is not sure of.
    static func decodeBatchWithFoundation(_ payload: String) throws -> [ChangeNotice] {
        try JSONDecoder().decode([Lenient].self, from: Data(payload.utf8)).compactMap { $0.wire?.notice }
    }

    /// The notices of a payload read by `FlatJSON`, as `JSONDecoder` reads them into `Wire`
    /// (unknown keys ignored); nil when an element would not decode (its type of `k`, `r`, `u`,
    /// `n` or `v` is wrong, or `k` or `r` is missing), left to `JSONDecoder` and `Lenient`.
    private static func notices(flatJSON elements: [[String: FlatJSON.Value]]) -> [ChangeNotice]? {
        var notices: [ChangeNotice] = []
        notices.reserveCapacity(elements.count)
        for fields in elements {
            guard case .string(let k)? = fields["k"], case .integer(let r)? = fields["r"] else { return nil }
            var wire = Wire(k: k, r: r)
            switch fields["u"] {
            case nil, .null?: break
            case .integer(let u)?: wire.u = u
            default: return nil
            }
            switch fields["n"] {
            case nil, .null?: break
            case .string(let n)?: wire.n = n
            default: return nil
            }
            switch fields["v"] {
            case nil, .null?: break
            case .bool(let v)?: wire.v = v
            default: return nil
            }
            if let notice = wire.notice { notices.append(notice) }
        }
        return notices
    }

    private struct Lenient: Decodable {
        var wire: Wire?

        init(from decoder: any Decoder) throws {
            wire = try? Wire(from: decoder)
        }
    }

    /// The JSON shape on the channel, shared with the triggers of `sql/0004`, `0006`, `0008`
    /// and `0009`: `{"k": kind, "r": room_id, "u": user_id, "n": user_name, "v": flag}`. The
    /// kinds `upd`, `del`, `read` and `leave` (written by older versions and by the triggers)
    /// are wake-ups like `msg`.
    private struct Wire: Codable {
        var k: String
        var r: Int64
        var u: Int64?
        var n: String?
        var v: Bool?

        init(_ notice: ChangeNotice) {
            switch notice {
            case .roomChanged(let roomID): self.init(k: "msg", r: roomID)
            case .joined(let roomID, let userID): self.init(k: "join", r: roomID, u: userID)
            case .roomCreated(let roomID): self.init(k: "room", r: roomID)
            case .userDeactivated(let userID): self.init(k: "user_off", r: 0, u: userID)
            case .live(let roomID, .typing(let userID, let userName, let isTyping)):
                self.init(k: "typing", r: roomID, u: userID, n: userName, v: isTyping)
            case .live(let roomID, .presence(let userID, let userName, let online)):
                self.init(k: "status", r: roomID, u: userID, n: userName, v: online)
            case .live(let roomID, .roomUpdated): self.init(k: "room_upd", r: roomID)
            }
        }

        init(k: String, r: Int64, u: Int64? = nil, n: String? = nil, v: Bool? = nil) {
            (self.k, self.r, self.u, self.n, self.v) = (k, r, u, n, v)
        }

        var notice: ChangeNotice? {
            switch k {
            case "msg", "upd", "del", "read", "leave": return .roomChanged(roomID: r)
            case "join": return u.map { .joined(roomID: r, userID: $0) }
            case "room": return .roomCreated(roomID: r)
            case "user_off": return u.map { .userDeactivated(userID: $0) }
            case "typing": return u.map { .live(roomID: r, .typing(userID: $0, userName: n ?? "", isTyping: v ?? false)) }
            case "status": return u.map { .live(roomID: r, .presence(userID: $0, userName: n ?? "", online: v ?? false)) }
            case "room_upd": return .live(roomID: r, .roomUpdated)
            default: return nil
            }
        }
    }
}
