import ChatCore
import Foundation
import Logging
import NIOCore
import NIOConcurrencyHelpers
import Postgres
import ServiceLifecycle

/// Fans changes out to this instance's sockets, in order, exactly once.
///
/// It LISTENs for `ChangeNotice`s from every instance and treats them as wake-ups: the
/// changes themselves are read from the room's change sequence (`sql/0009`), per room, from
/// a cursor (the highest `seq` already delivered here). Within a room, numbers follow commit
/// order, so reading `seq > cursor` never skips a change and never repeats one; each
/// subscription also keeps its own cursor, which makes catch-up (`last_seq`,
/// `last_message_id`) and live delivery meet without gap or duplicate. One pump per room
/// (a child task of `run()`, while the room has work) applies its wake-ups and live notices
/// (typing, presence) in arrival order.
///
/// Notifications can be lost (listener reconnecting, an instance dying between commit and
/// NOTIFY), so after every (re)connect of the listener, and every `pollInterval`, the hub
/// compares each room's `last_seq` with its cursor and catches up.
final class RealtimeHub: Service {
    struct Settings: Sendable {
        var pollInterval: Duration
        var catchUpBatch: Int
    }

    /// Where a room socket starts (decided when its upgrade was admitted): first the
    /// messages with an id above `messagesAfter` (a `last_message_id` catch-up) numbered up to
    /// `changesAfter`, then every change numbered above `changesAfter`; `resync`: the client's
    /// `last_seq` could not be replayed, it is told so first.
    struct CatchUp: Sendable, Equatable {
        var messagesAfter: Int64?
        var changesAfter: Int64
        var resync = false
    }

    /// A socket's view of one room: the highest `seq` it was sent, and while it catches up,
    /// the live frames held back until the history before them is sent.
    struct Subscription {
        let session: SocketSession
        var cursor: Int64
        var heldBack: [Outgoing]?
    }

    struct Outgoing {
        var frame: WireFrame
        /// Nil for live-only frames (typing, presence, room updates).
        var seq: Int64?
    }

    struct RoomChannel {
        var generation: Int
        /// The highest `seq` delivered to this room's subscriptions here.
        var cursor: Int64
        var subscriptions: [Int: Subscription] = [:]
        /// Live-only notices (typing, presence, room updates), in arrival order.
        var notices: [ChangeNotice] = []
        var needsFetch = false
        var pumping = false
    }

    struct State {
        var rooms: [Int64: RoomChannel] = [:]
        /// User streams on this instance, by user.
        var userStreams: [Int64: [Int: SocketSession]] = [:]
        var nextGeneration = 1
    }

    private let store: RealtimeStore
    private let sockets: OpenSockets
    private let listener: PostgresListener
    private let files: FileURLs
    private let settings: Settings
    private let metrics: ServerMetrics
    private let logger: Logger
    private let state = NIOLockedValueBox(State())
    /// Work that runs on its own (a room's pump, a room entering user streams), started by
    /// `run()`'s task group, not by unstructured tasks.
    private let work: (stream: AsyncStream<Work>, continuation: AsyncStream<Work>.Continuation)

    enum Work: Sendable {
        /// Apply a room's queued wake-ups and notices until none is left.
        case pump(roomID: Int64, generation: Int)
        /// A room entered the list of this user (nil: every participant, a new room).
        case roomAppeared(roomID: Int64, userID: Int64?)
    }

    init(
        postgres: PostgresClient, sockets: OpenSockets, files: FileURLs, settings: Settings, metrics: ServerMetrics,
        logger: Logger
    ) {
        self.metrics = metrics
        self.store = RealtimeStore(db: postgres)
        self.sockets = sockets
        self.listener = PostgresListener(client: postgres, channels: [ChangeNotice.channel], logger: logger)
        self.files = files
        self.settings = settings
        self.logger = logger
        self.work = AsyncStream.makeStream(of: Work.self)
    }

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.listener.run() }
            group.addTask {
                await withDiscardingTaskGroup { running in
                    for await item in self.work.stream {
                        running.addTask {
                            switch item {
                            case .pump(let roomID, let generation): await self.pump(roomID: roomID, generation: generation)
                            case .roomAppeared(let roomID, let userID): await self.roomAppeared(roomID, for: userID)
                            }
                        }
                    }
                }
            }
            group.addTask {
                var listens = 0
                for await event in self.listener.events {
                    switch event {
                    case .listening:
                        listens += 1
                        if listens > 1 {
                            self.metrics.listenerReconnects.increment()
                            // A deactivation announced while no one listened is only in the tables.
                            await self.sweepMembership()
                        }
                        // Whatever was announced while no one listened is in the tables.
                        self.fetchAllRooms()
                    case .notification(let notification):
                        self.metrics.notifyBatchesReceived.increment()
                        do {
                            for notice in try ChangeNotice.decodeBatch(notification.payload) { self.dispatch(notice) }
                        } catch {
                            self.logger.warning("ignoring malformed change notice", metadata: ["payload": "\(notification.payload)"])
                        }
                    }
                }
            }
            group.addTask {
                await withGracefulShutdownHandler {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: self.settings.pollInterval)
                        await self.pollRoomHeads()
                        await self.sweepMembership()
                        // A token that expired ends its socket (4401) within one poll interval.
                        let now = Date()
                        self.sockets.close(where: { $0.tokenExpiresAt <= now }, with: .expired)
                    }
                } onGracefulShutdown: {}
            }
            try await gracefulShutdown()
            listener.stop()
            work.continuation.finish()
            group.cancelAll()
        }
    }

    // MARK: Subscribing

    /// Adds a room socket: sends what `catchUp` names (holding live frames back meanwhile),
    /// then returns with the socket live.
    func subscribe(_ session: SocketSession, roomID: Int64, catchUp: CatchUp) async throws {
        let joinedAt = try await register(session, roomIDs: [roomID], holdBack: true)[roomID] ?? catchUp.changesAfter
        // A removal that committed between the socket's admission and its registration was
        // announced before this subscription could hear it: check membership once more.
        if !(try await store.inactiveParticipants(roomID: roomID, among: [session.user.id]).isEmpty) {
            session.requestClose(.removed)
            return
        }
        session.markSubscribed()
        var caughtUp = 0
        defer { metrics.catchUpFrames.record(Double(caughtUp)) }
        if catchUp.resync {
            guard await session.sendPaced([WireFrame(text: ServerFrame.resyncRequired(roomID))]) else { return }
            caughtUp += 1
        }
        if var afterID = catchUp.messagesAfter {
            while !session.isClosing {
                let messages = try await store.messages(
                    roomID: roomID, afterID: afterID, throughSeq: catchUp.changesAfter, limit: settings.catchUpBatch)
                let page = messages.map { WireFrame(text: ServerFrame.message($0, files: files)) }
                guard await session.sendPaced(page) else { return }
                caughtUp += page.count
                if let last = messages.last { afterID = last.id }
                if messages.count < settings.catchUpBatch { break }
            }
        }
        // Every change after the starting point up to where the subscription joined the live
        // stream; the live stream (held back until now) has everything after that.
        var cursor = catchUp.changesAfter
        while cursor < joinedAt, !session.isClosing {
            let changes = try await store.changes(
                roomID: roomID, after: cursor, through: joinedAt, limit: settings.catchUpBatch)
            let page = changes.flatMap { change in
                ChangeFrame.frames(for: change, files: files).filter { $0.audience.includes(session) }.map(\.wire)
            }
            guard await session.sendPaced(page) else { return }
            caughtUp += page.count
            if let last = changes.last { cursor = last.seq }
            if changes.count < settings.catchUpBatch { break }
        }
        let through = max(joinedAt, catchUp.changesAfter)
        state.withLockedValue { state in
            guard var subscription = state.rooms[roomID]?.subscriptions[session.id] else { return }
            var batch = OutboundBatch()
            Self.goLive(&subscription, after: through, batch: &batch)
            state.rooms[roomID]?.subscriptions[session.id] = subscription
            batch.submit()
        }
    }

    /// Adds a user stream: live `message` and `message_read` of all the user's rooms, and
    /// `room_created` when a room appears in their list.
    func subscribeUserStream(_ session: SocketSession) async throws {
        state.withLockedValue { $0.userStreams[session.user.id, default: [:]][session.id] = session }
        try await register(session, roomIDs: try await store.roomIDs(of: session.user.id), holdBack: false)
        session.markSubscribed()
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

    /// Removed users stop hearing the room: their room sockets close (4403), their user
    /// streams get `room_removed` and unsubscribe from it.
    private static func cutOff(_ userIDs: Set<Int64>, from roomID: Int64, in state: inout State) {
        guard let room = state.rooms[roomID] else { return }
        for subscription in room.subscriptions.values where userIDs.contains(subscription.session.user.id) {
            switch subscription.session.kind {
            case .room: subscription.session.requestClose(.removed)
            case .userStream: subscription.session.send(ServerFrame.roomRemoved(roomID))
            }
            remove(subscription.session.id, from: roomID, in: &state)
        }
    }

    private static func remove(_ sessionID: Int, from roomID: Int64, in state: inout State) {
        guard state.rooms[roomID]?.subscriptions.removeValue(forKey: sessionID) != nil else { return }
        if state.rooms[roomID]?.subscriptions.isEmpty == true { state.rooms[roomID] = nil }
    }

    /// Joins the session to each room's channel, creating a channel (its cursor read from
    /// the room's `last_seq`) where this instance has no other subscriber of the room. The
    /// head is read before registering, so every change after it reaches the new subscription
    /// live, and every change up to it is visible to a catch-up that starts afterwards.
    /// Returns the cursor each room's channel had when the session joined it.
    @discardableResult
    private func register(_ session: SocketSession, roomIDs: [Int64], holdBack: Bool) async throws -> [Int64: Int64] {
        var pending = roomIDs
        var heads: [Int64: Int64] = [:]
        var created: [Int64] = []
        while !pending.isEmpty {
            let missing = state.withLockedValue { state in pending.filter { state.rooms[$0] == nil } }
            let read = missing.isEmpty ? [:] : try await store.lastSeqs(roomIDs: missing)
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
                    let cursor = state.rooms[roomID]!.cursor
                    heads[roomID] = cursor
                    state.rooms[roomID]!.subscriptions[session.id] = Subscription(
                        session: session, cursor: cursor, heldBack: holdBack ? [] : nil)
                }
                return retry
            }
        }
        // A wake-up that arrived between reading a head and creating its channel found no
        // channel: look once more instead of waiting for the poll.
        for roomID in created { enqueue(nil, roomID: roomID) }
        return heads
    }

    // MARK: Notices

    private func dispatch(_ notice: ChangeNotice) {
        switch notice.kind {
        case .roomCreated:
            work.continuation.yield(.roomAppeared(roomID: notice.roomID, userID: nil))
            return
        case .userDeactivated:
            if let userID = notice.userID { sockets.close(where: { $0.user.id == userID }, with: .deactivated) }
            return
        case .joined:
            if let userID = notice.userID, state.withLockedValue({ $0.userStreams[userID] != nil }) {
                work.continuation.yield(.roomAppeared(roomID: notice.roomID, userID: userID))
            }
        default:
            break
        }
        enqueue(notice, roomID: notice.roomID)
    }

    private func enqueue(_ notice: ChangeNotice?, roomID: Int64) {
        let start: Int? = state.withLockedValue { state in
            guard var room = state.rooms[roomID] else { return nil }
            if let notice, notice.isLiveOnly { room.notices.append(notice) } else { room.needsFetch = true }
            defer { state.rooms[roomID] = room }
            guard !room.pumping else { return nil }
            room.pumping = true
            return room.generation
        }
        if let generation = start {
            work.continuation.yield(.pump(roomID: roomID, generation: generation))
        }
    }

    private func fetchAllRooms() {
        for roomID in state.withLockedValue({ Array($0.rooms.keys) }) { enqueue(nil, roomID: roomID) }
    }

    private func pollRoomHeads() async {
        let cursors = state.withLockedValue { $0.rooms.mapValues(\.cursor) }
        guard !cursors.isEmpty else { return }
        do {
            for (roomID, head) in try await store.lastSeqs(roomIDs: Array(cursors.keys))
            where head > cursors[roomID] ?? head {
                logger.debug("catching up a room whose wake-up was missed", metadata: ["room_id": "\(roomID)"])
                enqueue(nil, roomID: roomID)
            }
        } catch {
            logger.warning("room head poll failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// Applies a room's queued work until none is left: new changes first (from the
    /// cursor), then the live notices in arrival order.
    private func pump(roomID: Int64, generation: Int) async {
        while !Task.isCancelled {  // shutdown
            let work: (cursor: Int64, fetch: Bool, notices: [ChangeNotice])? = state.withLockedValue { state in
                guard var room = state.rooms[roomID], room.generation == generation else { return nil }
                defer { state.rooms[roomID] = room }
                guard room.needsFetch || !room.notices.isEmpty else {
                    room.pumping = false
                    return nil
                }
                defer {
                    room.needsFetch = false
                    room.notices = []
                }
                return (room.cursor, room.needsFetch, room.notices)
            }
            guard let work else { return }
            var applied = 0
            do {
                // Live notices too go only to who may still hear the room: the changes before
                // them (a removal among them) are applied first.
                if work.fetch || !work.notices.isEmpty {
                    try await fetchChanges(roomID: roomID, generation: generation, after: work.cursor)
                }
                for notice in work.notices {
                    try await apply(notice, generation: generation)
                    applied += 1
                }
            } catch {
                logger.warning(
                    "room delivery failed, retrying", metadata: ["room_id": "\(roomID)", "error": "\(String(reflecting: error))"])
                state.withLockedValue { state in
                    guard state.rooms[roomID]?.generation == generation else { return }
                    state.rooms[roomID]!.needsFetch = true
                    // Only what was not applied yet: the rest reached its sockets already.
                    state.rooms[roomID]!.notices.insert(contentsOf: work.notices.dropFirst(applied), at: 0)
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Cuts off the subscriptions whose user may no longer hear their room for a reason the
    /// change sequence does not carry (a deactivated user or room), in case its notice was
    /// lost: one statement for every subscription here, every `pollInterval` and after the
    /// listener reconnects. Leaves and removals need no sweep: they are changes, applied in
    /// order before any later change of the room is delivered.
    private func sweepMembership() async {
        let pairs = state.withLockedValue { state in
            state.rooms.flatMap { roomID, room in
                Set(room.subscriptions.values.map(\.session.user.id)).map { (roomID, $0) }
            }
        }
        guard !pairs.isEmpty else { return }
        do {
            let inactive = try await store.inactiveSubscribers(roomIDs: pairs.map(\.0), userIDs: pairs.map(\.1))
            guard !inactive.isEmpty else { return }
            state.withLockedValue { state in
                for (roomID, users) in Dictionary(grouping: inactive, by: \.roomID) {
                    Self.cutOff(Set(users.map(\.userID)), from: roomID, in: &state)
                }
            }
        } catch {
            logger.warning("membership sweep failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    private func fetchChanges(roomID: Int64, generation: Int, after cursor: Int64) async throws {
        var cursor = cursor
        while true {
            // Notices from different instances can arrive in any order, and can be lost, but a
            // leave or removal is itself a change of the room: applied in order, it cuts its
            // user off before any later change is sent.
            let changes = try await store.changes(roomID: roomID, after: cursor, limit: settings.catchUpBatch)
            guard let last = changes.last else { return }
            let rendered = changes.map { ($0, ChangeFrame.frames(for: $0, files: files)) }
            var queued = 0
            defer { if queued > 0 { metrics.framesQueued.increment(by: Int64(queued)) } }
            let stillOpen: Bool = state.withLockedValue { state in
                var batch = OutboundBatch()
                // Handed to the event loops inside the lock: the next wake-up's frames follow.
                defer { batch.submit() }
                guard state.rooms[roomID]?.generation == generation else { return false }
                for (change, frames) in rendered {
                    // Whoever left hears nothing of the room from here on, their leave included.
                    if case .participantLeft(let userID, _) = change.event { Self.cutOff([userID], from: roomID, in: &state) }
                    guard var room = state.rooms[roomID] else { return false }
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
                return state.rooms[roomID]?.generation == generation
            }
            guard stillOpen, changes.count == settings.catchUpBatch else { return }
            cursor = last.seq
        }
    }

    /// The live-only notices; every other kind is a wake-up that `fetchChanges` answers.
    private func apply(_ notice: ChangeNotice, generation: Int) async throws {
        let roomID = notice.roomID
        switch notice.kind {
        case .roomUpdated:
            // Each participant's user streams here get the room as that participant sees it.
            let streams = state.withLockedValue { state -> [Int64: [SocketSession]] in
                guard let room = state.rooms[roomID], room.generation == generation else { return [:] }
                return Dictionary(
                    grouping: room.subscriptions.values.map(\.session).filter { $0.kind == .userStream }, by: \.user.id)
            }
            for (userID, sessions) in streams {
                guard let summary = try await store.summary(roomID: roomID, userID: userID) else { continue }
                let frame = ServerFrame.roomUpdated(summary)
                for session in sessions { session.send(frame) }
            }
        case .typing, .status:
            guard let userID = notice.userID else { return }
            let frame =
                notice.kind == .typing
                ? ServerFrame.encode(
                    ServerFrame.Typing(
                        roomId: roomID, userId: userID, userName: notice.userName ?? "", isTyping: notice.flag ?? false))
                : ServerFrame.encode(
                    ServerFrame.UserStatus(
                        roomId: roomID, userId: userID, userName: notice.userName ?? "",
                        status: notice.flag == true ? "online" : "offline"))
            broadcast(frame, roomID: roomID, generation: generation) {
                $0.kind == .room(roomID) && $0.user.id != userID
            }
        default:
            return
        }
    }

    private func broadcast(
        _ frame: String, roomID: Int64, generation: Int, to include: (SocketSession) -> Bool
    ) {
        let item = Outgoing(frame: WireFrame(text: frame), seq: nil)
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

    /// A room entered the list of `userID` (or of every participant, for a new room): their
    /// user streams on this instance subscribe to it and receive `room_created`.
    private func roomAppeared(_ roomID: Int64, for userID: Int64?) async {
        do {
            let candidates = state.withLockedValue { Set($0.userStreams.keys) }
            guard !candidates.isEmpty else { return }
            let users: [Int64]
            if let userID { users = [userID] } else { users = try await store.participantIDs(roomID: roomID) }
            for user in users where candidates.contains(user) {
                guard let summary = try await store.summary(roomID: roomID, userID: user) else { continue }
                let frame = ServerFrame.roomCreated(summary)
                let sessions = state.withLockedValue { Array(($0.userStreams[user] ?? [:]).values) }
                for session in sessions {
                    session.send(frame)
                    try await register(session, roomIDs: [roomID], holdBack: false)
                }
            }
        } catch {
            logger.warning("room_created delivery failed", metadata: ["room_id": "\(roomID)", "error": "\(error)"])
        }
    }
}
