import ChatCore
import Foundation
import Logging
import Postgres
import ServiceLifecycle

/// Fans changes out to this instance's sockets, in order, exactly once.
///
/// One message's way from a `POST` on instance A to a socket on instance B: A's
/// `MessageWriter` stores it with the room's next `seq` and its statement NOTIFYs a
/// `ChangeNotice` (`.roomChanged`); B's `PostgresListener` (a service of its own) hands the
/// notification to this hub's `run()`, which queues a wake-up in the room's channel
/// (`RoomRegistry`); the room's `RoomPump` reads the changes after the channel's cursor,
/// renders each once (`ChangeFrame`) and hands the bytes to every subscribed socket's
/// `SocketOutbox`.
///
/// Notices are only wake-ups: they can be lost (listener reconnecting, an instance dying
/// between commit and NOTIFY), so after every (re)connect of the listener, and every
/// `pollInterval`, the hub compares each room's `last_seq` with its cursor and catches up.
/// Each subscription also keeps its own cursor, which makes catch-up (`last_seq`,
/// `last_message_id`) and live delivery meet without gap or duplicate.
final class RealtimeHub: Service {
    struct Settings: Sendable {
        var pollInterval: Duration
        var catchUpBatch: Int
    }

    /// Where a room socket starts (decided when its upgrade was admitted): first the
    /// messages with an id above `messagesAfter` (a `last_message_id` catch-up) numbered up to
    /// `changesAfter`, then every change numbered above `changesAfter`; `resync`: the client's
    /// `last_seq` could not be replayed, it is told so first. `memberThrough`: the room's
    /// number up to which the user was known to be a member at admission (a leave up to
    /// there, delivered here late, ended an earlier membership).
    struct CatchUp: Sendable, Equatable {
        var messagesAfter: Int64?
        var changesAfter: Int64
        var memberThrough: Int64
        var resync = false
    }

    private let store: RealtimeStore
    private let sockets: OpenSockets
    private let listenerEvents: AsyncStream<PostgresListener.Event>
    private let registry = RoomRegistry()
    private let pump: RoomPump
    private let files: FileURLs
    private let settings: Settings
    private let metrics: ServerMetrics
    private let logger: Logger
    /// Work that runs on its own (a room's pump, a room entering user streams), started by
    /// `run()`'s task group, not by unstructured tasks.
    private let work: (stream: AsyncStream<Work>, continuation: AsyncStream<Work>.Continuation)

    enum Work: Sendable {
        /// Apply a room's queued wake-ups and live events until none is left.
        case pump(roomID: Int64, generation: Int)
        /// A room entered the list of this user (nil: every participant, a new room).
        case roomAppeared(roomID: Int64, userID: Int64?)
    }

    /// - Parameter listenerEvents: the events of the `PostgresListener` (run as a service
    ///   beside the hub) that listens on `ChangeNotice.channel`.
    init(
        postgres: PostgresClient, listenerEvents: AsyncStream<PostgresListener.Event>, sockets: OpenSockets,
        files: FileURLs, settings: Settings, metrics: ServerMetrics, logger: Logger
    ) {
        self.metrics = metrics
        self.store = RealtimeStore(db: postgres)
        self.sockets = sockets
        self.listenerEvents = listenerEvents
        self.files = files
        self.settings = settings
        self.logger = logger
        self.pump = RoomPump(
            registry: registry, store: store, files: files, pageSize: settings.catchUpBatch, metrics: metrics,
            logger: logger)
        self.work = AsyncStream.makeStream(of: Work.self)
    }

    func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask {
                await withDiscardingTaskGroup { running in
                    for await item in self.work.stream {
                        running.addTask {
                            switch item {
                            case .pump(let roomID, let generation): await self.pump.run(roomID: roomID, generation: generation)
                            case .roomAppeared(let roomID, let userID): await self.roomAppeared(roomID, for: userID)
                            }
                        }
                    }
                }
            }
            group.addTask {
                // Ends when the group is cancelled at shutdown (the listener, a service of its
                // own, stops after the hub).
                var listens = 0
                for await event in self.listenerEvents {
                    switch event {
                    case .listening:
                        listens += 1
                        if listens > 1 {
                            self.metrics.listenerReconnects.increment()
                            // A deactivation announced while no one listened is only in the tables.
                            await self.sweepMembership()
                        }
                        // Whatever was announced while no one listened is in the tables.
                        for roomID in self.registry.roomIDs { self.wake(roomID) }
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
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.settings.pollInterval)
                    await self.pollRoomHeads()
                    await self.sweepMembership()
                    // A token that expired ends its socket (4401) within one poll interval.
                    let now = Date()
                    self.sockets.close(where: { $0.tokenExpiresAt <= now }, with: .expired)
                }
            }
            try? await gracefulShutdown()
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
        registry.goLive(
            session, roomID: roomID, after: max(joinedAt, catchUp.changesAfter), memberThrough: catchUp.memberThrough)
    }

    /// Adds a user stream: live `message` and `message_read` of all the user's rooms, and
    /// `room_created` when a room appears in their list.
    func subscribeUserStream(_ session: SocketSession) async throws {
        registry.addUserStream(session)
        try await register(session, roomIDs: try await store.roomIDs(of: session.user.id), holdBack: false)
        session.markSubscribed()
    }

    func unsubscribe(_ session: SocketSession) {
        registry.unsubscribe(session)
    }

    /// Joins the session to the rooms' channels (`RoomRegistry.register`); returns the cursor
    /// each channel had when it joined.
    @discardableResult
    private func register(_ session: SocketSession, roomIDs: [Int64], holdBack: Bool) async throws -> [Int64: Int64] {
        let (joinedAt, created) = try await registry.register(session, roomIDs: roomIDs, holdBack: holdBack) {
            try await store.lastSeqs(roomIDs: $0)
        }
        // A wake-up that arrived between reading a head and creating its channel found no
        // channel: look once more instead of waiting for the poll.
        for roomID in created { wake(roomID) }
        return joinedAt
    }

    // MARK: Notices

    private func dispatch(_ notice: ChangeNotice) {
        switch notice {
        case .roomChanged(let roomID):
            wake(roomID)
        case .joined(let roomID, let userID):
            if !registry.userStreams(of: userID).isEmpty {
                work.continuation.yield(.roomAppeared(roomID: roomID, userID: userID))
            }
            wake(roomID)
        case .roomCreated(let roomID):
            work.continuation.yield(.roomAppeared(roomID: roomID, userID: nil))
        case .userDeactivated(let userID):
            sockets.close(where: { $0.user.id == userID }, with: .deactivated)
        case .live(let roomID, let event):
            startPump(roomID: roomID, generation: registry.queue(event, roomID: roomID))
        }
    }

    private func wake(_ roomID: Int64) {
        startPump(roomID: roomID, generation: registry.queue(nil, roomID: roomID))
    }

    private func startPump(roomID: Int64, generation: Int?) {
        if let generation { work.continuation.yield(.pump(roomID: roomID, generation: generation)) }
    }

    private func pollRoomHeads() async {
        let cursors = registry.cursors()
        guard !cursors.isEmpty else { return }
        do {
            for (roomID, head) in try await store.lastSeqs(roomIDs: Array(cursors.keys))
            where head > cursors[roomID] ?? head {
                logger.debug("catching up a room whose wake-up was missed", metadata: ["room_id": "\(roomID)"])
                wake(roomID)
            }
        } catch {
            logger.warning("room head poll failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// Cuts off the subscriptions whose user may no longer hear their room for a reason the
    /// change sequence does not carry (a deactivated user or room), in case its notice was
    /// lost: one statement for every subscription here, every `pollInterval` and after the
    /// listener reconnects. Leaves and removals need no sweep: they are changes, applied in
    /// order before any later change of the room is delivered.
    private func sweepMembership() async {
        let pairs = registry.subscribedPairs()
        guard !pairs.isEmpty else { return }
        do {
            let inactive = try await store.inactiveSubscribers(roomIDs: pairs.map(\.roomID), userIDs: pairs.map(\.userID))
            if !inactive.isEmpty { registry.cutOff(inactive) }
        } catch {
            logger.warning("membership sweep failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// The user's streams here subscribe to the room (those that do not follow it yet), then
    /// get `room_created`. Subscribed first, live frames held back, then the room's head and
    /// summary read: every change after the subscription's start reaches the stream after
    /// `room_created`, and every change before it is in the summary (a message sent right
    /// after the room was created is not lost between the two). A leave delivered meanwhile
    /// cuts the stream off only if it is newer than the head read before the summary that
    /// shows the user in the room (else it ended an earlier membership). If anything fails,
    /// the streams leave the room again rather than stay held back.
    private func join(_ user: Int64, to roomID: Int64) async throws {
        var joined: [(session: SocketSession, cursor: Int64)] = []
        // Streams that follow the room already (their room list was read after the join)
        // still get `room_created`: a client may have listed its rooms before.
        var following: [SocketSession] = []
        do {
            for session in registry.userStreams(of: user) {
                if let cursor = try await register(session, roomIDs: [roomID], holdBack: true)[roomID] {
                    joined.append((session, cursor))
                } else {
                    following.append(session)
                }
            }
            guard !joined.isEmpty || !following.isEmpty else { return }
            let head = try await store.lastSeqs(roomIDs: [roomID])[roomID] ?? 0
            guard let summary = try await store.summary(roomID: roomID, userID: user) else {
                for (session, _) in joined { registry.unsubscribe(session, from: roomID) }
                return
            }
            let frame = ServerFrame.roomCreated(summary)
            for session in following { session.send(frame) }
            for (session, cursor) in joined {
                session.send(frame)
                registry.goLive(session, roomID: roomID, after: cursor, memberThrough: head)
            }
        } catch {
            for (session, _) in joined { registry.unsubscribe(session, from: roomID) }
            throw error
        }
    }

    /// A room entered the list of `userID` (or of every participant, for a new room): their
    /// user streams on this instance subscribe to it and receive `room_created`.
    private func roomAppeared(_ roomID: Int64, for userID: Int64?) async {
        do {
            let candidates = registry.usersWithStreams
            guard !candidates.isEmpty else { return }
            let users: [Int64]
            if let userID { users = [userID] } else { users = try await store.participantIDs(roomID: roomID) }
            for user in users where candidates.contains(user) {
                try await join(user, to: roomID)
            }
        } catch {
            logger.warning("room_created delivery failed", metadata: ["room_id": "\(roomID)", "error": "\(error)"])
        }
    }
}
