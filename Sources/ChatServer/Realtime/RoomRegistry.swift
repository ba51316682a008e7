import ChatCore
import NIOConcurrencyHelpers

/// Who on this instance hears which room, and from where.
///
/// Each room with a subscriber here has a channel: its cursor (the highest `seq` delivered
/// here), its subscriptions (room sockets and user streams, each with its own cursor), and
/// the work queued for its pump (`RoomPump`). User streams are also kept by user, for rooms
/// that enter a user's list. Everything happens under one lock and never waits; frames are
/// handed to the event loops (`OutboundBatch`) inside it, so sockets receive a room's frames
/// in the order the lock saw them.
final class RoomRegistry: Sendable {
    /// A socket's view of one room: the highest `seq` it was sent, and while it catches up,
    /// the live frames held back until the history before them is sent.
    struct Subscription {
        let session: SocketSession
        var cursor: Int64
        var heldBack: [Outgoing]?
        /// A subscription that holds its frames back (a room socket catching up, a user stream
        /// joining a room it just entered) does not know yet whether a leave of its user
        /// delivered meanwhile is from before the user's (re)join: the leave is noted here
        /// and decided at `goLive`, against the number up to which membership is known.
        var leaveWhileJoining: Int64?
    }

    struct Outgoing {
        var frame: WireFrame
        /// Nil for live-only frames (typing, presence).
        var seq: Int64?
    }

    /// What a room's pump is to do next: read the changes after `cursor`, then apply `live`.
    struct PumpWork {
        var cursor: Int64
        var live: [ChangeNotice.LiveEvent]
    }

    private struct RoomChannel {
        /// Tells a pump started for an earlier channel of the room (its subscribers all left
        /// meanwhile) that this one is not its own.
        var generation: Int
        var cursor: Int64
        var subscriptions: [Int: Subscription] = [:]
        var live: [ChangeNotice.LiveEvent] = []
        var needsFetch = false
        var pumping = false
    }

    private struct State {
        var rooms: [Int64: RoomChannel] = [:]
        var userStreams: [Int64: [Int: SocketSession]] = [:]
        var nextGeneration = 1
    }

    private let state = NIOLockedValueBox(State())

    // MARK: Subscriptions

    /// Joins the session to each room's channel, creating a channel (its cursor read with
    /// `readHeads`, the rooms' `last_seq`) where this instance has no other subscriber of the
    /// room. The head is read before registering, so every change after it reaches the new
    /// subscription live, and every change up to it is visible to a catch-up that starts
    /// afterwards. `holdBack`: live frames wait until `goLive`. Returns the cursor each room's
    /// channel had when the session joined it (not for a room it was subscribed to already),
    /// and the rooms whose channel it created (a wake-up that arrived between reading a head
    /// and creating its channel found none).
    func register(
        _ session: SocketSession, roomIDs: [Int64], holdBack: Bool,
        readHeads: ([Int64]) async throws -> [Int64: Int64]
    ) async throws -> (joinedAt: [Int64: Int64], created: [Int64]) {
        var pending = roomIDs
        var joinedAt: [Int64: Int64] = [:]
        var created: [Int64] = []
        while !pending.isEmpty {
            let missing = state.withLockedValue { state in pending.filter { state.rooms[$0] == nil } }
            let read = missing.isEmpty ? [:] : try await readHeads(missing)
            pending = state.withLockedValue { state in
                // A socket that closed meanwhile has already unsubscribed: do not add it back.
                guard !session.isClosing else { return [] }
                var retry: [Int64] = []
                for roomID in pending {
                    if state.rooms[roomID] == nil {
                        // The channel vanished after the check (its last subscriber left):
                        // read the head again rather than start from a stale or zero cursor.
                        guard let head = read[roomID] else {
                            retry.append(roomID)
                            continue
                        }
                        state.rooms[roomID] = RoomChannel(generation: state.nextGeneration, cursor: head)
                        state.nextGeneration += 1
                        created.append(roomID)
                    }
                    // Already subscribed (a user stream whose room list and a room's arrival
                    // crossed): the subscription it has keeps its cursor and held frames.
                    guard state.rooms[roomID]!.subscriptions[session.id] == nil else { continue }
                    let cursor = state.rooms[roomID]!.cursor
                    joinedAt[roomID] = cursor
                    state.rooms[roomID]!.subscriptions[session.id] = Subscription(
                        session: session, cursor: cursor, heldBack: holdBack ? [] : nil)
                }
                return retry
            }
        }
        return (joinedAt, created)
    }

    func addUserStream(_ session: SocketSession) {
        state.withLockedValue { $0.userStreams[session.user.id, default: [:]][session.id] = session }
    }

    func unsubscribe(_ session: SocketSession) {
        state.withLockedValue { state in
            switch session.kind {
            case .room(let roomID):
                Self.remove(session.id, from: roomID, in: &state)
            case .userStream:
                state.userStreams[session.user.id]?[session.id] = nil
                if state.userStreams[session.user.id]?.isEmpty == true { state.userStreams[session.user.id] = nil }
                for roomID in Array(state.rooms.keys) { Self.remove(session.id, from: roomID, in: &state) }
            }
        }
    }

    /// Takes one room out of a user stream's rooms.
    func unsubscribe(_ session: SocketSession, from roomID: Int64) {
        state.withLockedValue { Self.remove(session.id, from: roomID, in: &$0) }
    }

    /// Ends the catch-up of a subscription that sent every change up to `cursor`.
    /// `memberThrough`: the room's number up to which its user is known to be a member; a
    /// leave noted while it was held back that is newer than that is a real one, and cuts it
    /// off instead.
    func goLive(_ session: SocketSession, roomID: Int64, after cursor: Int64, memberThrough: Int64? = nil) {
        state.withLockedValue { state in
            guard var subscription = state.rooms[roomID]?.subscriptions[session.id] else { return }
            var batch = OutboundBatch()
            defer { batch.submit() }
            if let leave = subscription.leaveWhileJoining, leave > memberThrough ?? .min {
                Self.cutOff([session.user.id], from: roomID, in: &state, batch: &batch)
                return
            }
            subscription.leaveWhileJoining = nil  // an earlier membership's: live, later leaves count
            Self.goLive(&subscription, after: cursor, batch: &batch)
            state.rooms[roomID]?.subscriptions[session.id] = subscription
        }
    }

    func isSubscribed(_ session: SocketSession, to roomID: Int64) -> Bool {
        state.withLockedValue { $0.rooms[roomID]?.subscriptions[session.id] != nil }
    }

    func userStreams(of userID: Int64) -> [SocketSession] {
        state.withLockedValue { Array(($0.userStreams[userID] ?? [:]).values) }
    }

    var usersWithStreams: Set<Int64> { state.withLockedValue { Set($0.userStreams.keys) } }

    /// The user streams subscribed to the room, by user.
    func userStreamsByUser(roomID: Int64, generation: Int) -> [Int64: [SocketSession]] {
        state.withLockedValue { state in
            guard let room = state.rooms[roomID], room.generation == generation else { return [:] }
            return Dictionary(
                grouping: room.subscriptions.values.map(\.session).filter { $0.kind == .userStream }, by: \.user.id)
        }
    }

    /// Every (room, user) with a subscription here.
    func subscribedPairs() -> [(roomID: Int64, userID: Int64)] {
        state.withLockedValue { state in
            state.rooms.flatMap { roomID, room in
                Set(room.subscriptions.values.map(\.session.user.id)).map { (roomID, $0) }
            }
        }
    }

    /// Each room's cursor.
    func cursors() -> [Int64: Int64] { state.withLockedValue { $0.rooms.mapValues(\.cursor) } }

    /// Removed users stop hearing their rooms: their room sockets close (4403), their user
    /// streams get `room_removed` and unsubscribe from the room.
    func cutOff(_ pairs: [(roomID: Int64, userID: Int64)]) {
        state.withLockedValue { state in
            for (roomID, pairs) in Dictionary(grouping: pairs, by: \.roomID) {
                var batch = OutboundBatch()
                Self.cutOff(Set(pairs.map(\.userID)), from: roomID, in: &state, batch: &batch)
                batch.submit()
            }
        }
    }

    /// A leave of `userID`, numbered `seq`: the user's live subscriptions are cut off; those
    /// held back note it, for `goLive` to decide (see `leaveWhileJoining`).
    private static func applyLeave(
        of userID: Int64, seq: Int64, roomID: Int64, in state: inout State, batch: inout OutboundBatch
    ) {
        for (id, subscription) in state.rooms[roomID]?.subscriptions ?? [:] where subscription.session.user.id == userID {
            if subscription.heldBack != nil {
                state.rooms[roomID]!.subscriptions[id]!.leaveWhileJoining = seq
            } else {
                cutOff(subscription.session, from: roomID, in: &state, batch: &batch)
            }
        }
    }

    private static func cutOff(
        _ userIDs: Set<Int64>, from roomID: Int64, in state: inout State, batch: inout OutboundBatch
    ) {
        guard let room = state.rooms[roomID] else { return }
        for subscription in room.subscriptions.values where userIDs.contains(subscription.session.user.id) {
            cutOff(subscription.session, from: roomID, in: &state, batch: &batch)
        }
    }

    private static func cutOff(
        _ session: SocketSession, from roomID: Int64, in state: inout State, batch: inout OutboundBatch
    ) {
        switch session.kind {
        case .room: batch.close(session, with: .removed)
        case .userStream: batch.add(WireFrame(text: ServerFrame.roomRemoved(roomID)), to: session.outbox)
        }
        remove(session.id, from: roomID, in: &state)
    }

    private static func remove(_ sessionID: Int, from roomID: Int64, in state: inout State) {
        guard state.rooms[roomID]?.subscriptions.removeValue(forKey: sessionID) != nil else { return }
        if state.rooms[roomID]?.subscriptions.isEmpty == true { state.rooms[roomID] = nil }
    }

    // MARK: Pump work

    /// Queues work for a room's pump: a wake-up (`live` nil: read the room's changes) or a
    /// live event. Returns the channel's generation when no pump runs for it yet and one must
    /// be started; nil when one runs, or no one here hears the room.
    func queue(_ live: ChangeNotice.LiveEvent?, roomID: Int64) -> Int? {
        state.withLockedValue { state in
            guard var room = state.rooms[roomID] else { return nil }
            if let live { room.live.append(live) } else { room.needsFetch = true }
            defer { state.rooms[roomID] = room }
            guard !room.pumping else { return nil }
            room.pumping = true
            return room.generation
        }
    }

    var roomIDs: [Int64] { state.withLockedValue { Array($0.rooms.keys) } }

    /// Takes the room's queued work; nil (and the pump ends) when there is none or the
    /// channel is not the pump's any more.
    func takeWork(roomID: Int64, generation: Int) -> PumpWork? {
        state.withLockedValue { state in
            guard var room = state.rooms[roomID], room.generation == generation else { return nil }
            defer { state.rooms[roomID] = room }
            guard room.needsFetch || !room.live.isEmpty else {
                room.pumping = false
                return nil
            }
            defer {
                room.needsFetch = false
                room.live = []
            }
            return PumpWork(cursor: room.cursor, live: room.live)
        }
    }

    /// Puts back work that failed: a fetch, and the live events not applied yet (in front).
    func requeue(live: ArraySlice<ChangeNotice.LiveEvent>, roomID: Int64, generation: Int) {
        state.withLockedValue { state in
            guard state.rooms[roomID]?.generation == generation else { return }
            state.rooms[roomID]!.needsFetch = true
            state.rooms[roomID]!.live.insert(contentsOf: live, at: 0)
        }
    }

    // MARK: Delivery

    /// Delivers a page of a room's changes, in order, to the subscriptions each frame's
    /// audience includes. Whoever left hears nothing of the room from the leave on, the leave
    /// included. Returns whether the channel is still the pump's, and how many frames were
    /// queued.
    func deliver(
        _ changes: [(change: RoomChange, frames: [ChangeFrame])], roomID: Int64, generation: Int
    ) -> (stillOpen: Bool, queued: Int) {
        state.withLockedValue { state in
            var batch = OutboundBatch()
            // Handed to the event loops inside the lock: the next page's frames follow.
            defer { batch.submit() }
            guard state.rooms[roomID]?.generation == generation else { return (false, 0) }
            var queued = 0
            for (change, frames) in changes {
                if case .participantLeft(let userID, _) = change.event {
                    Self.applyLeave(of: userID, seq: change.seq, roomID: roomID, in: &state, batch: &batch)
                }
                guard var room = state.rooms[roomID] else { return (false, queued) }
                for frame in frames {
                    let item = Outgoing(frame: frame.wire, seq: frame.seq)
                    for id in room.subscriptions.keys where frame.audience.includes(room.subscriptions[id]!.session) {
                        Self.deliver(item, to: &room.subscriptions[id]!, batch: &batch)
                        queued += 1
                    }
                }
                room.cursor = max(room.cursor, change.seq)
                state.rooms[roomID] = room
            }
            return (state.rooms[roomID]?.generation == generation, queued)
        }
    }

    /// Delivers a live frame to the room's subscriptions that `include` accepts.
    func broadcast(_ frame: WireFrame, roomID: Int64, generation: Int, to include: (SocketSession) -> Bool) {
        let item = Outgoing(frame: frame, seq: nil)
        state.withLockedValue { state in
            guard var room = state.rooms[roomID], room.generation == generation else { return }
            var batch = OutboundBatch()
            for id in room.subscriptions.keys where include(room.subscriptions[id]!.session) {
                Self.deliver(item, to: &room.subscriptions[id]!, batch: &batch)
            }
            state.rooms[roomID] = room
            batch.submit()
        }
    }

    /// Ends a catch-up that sent every change up to `cursor`: the frames held back meanwhile
    /// go out in order, minus changes the catch-up already contained.
    static func goLive(_ subscription: inout Subscription, after cursor: Int64, batch: inout OutboundBatch) {
        subscription.cursor = cursor
        let heldBack = subscription.heldBack ?? []
        subscription.heldBack = nil  // first: deliver() holds frames back while this is set
        for item in heldBack { deliver(item, to: &subscription, batch: &batch) }
    }

    /// Adds a frame to `batch`, or holds it back while the subscription catches up. A change
    /// at or below the subscription's cursor was already sent and is skipped.
    static func deliver(_ item: Outgoing, to subscription: inout Subscription, batch: inout OutboundBatch) {
        if subscription.heldBack != nil {
            subscription.heldBack!.append(item)
            if subscription.heldBack!.count > subscription.session.limits.frames {
                subscription.session.requestClose(.tooSlow)
                subscription.heldBack = []
            }
            return
        }
        if let seq = item.seq {
            if seq <= subscription.cursor { return }
            subscription.cursor = seq
        }
        batch.add(item.frame, to: subscription.session.outbox)
    }
}
