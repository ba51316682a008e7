import ChatCore
import Logging

/// Applies one room's queued work on this instance until none is left: the room's new
/// changes first, read from the channel's cursor and rendered once per change, then the
/// live events (typing, presence, room updates) in arrival order. One pump runs per room
/// while it has work (`RealtimeHub.run()` starts it), so a room's frames go out in order.
struct RoomPump: Sendable {
    let registry: RoomRegistry
    let store: RealtimeStore
    let files: FileURLs
    /// Changes read per statement.
    let pageSize: Int
    let metrics: ServerMetrics
    let logger: Logger

    func run(roomID: Int64, generation: Int) async {
        while !Task.isCancelled {  // shutdown
            guard let work = registry.takeWork(roomID: roomID, generation: generation) else { return }
            var applied = 0
            do {
                // Live events too go only to who may still hear the room: the changes before
                // them (a removal among them) are applied first.
                try await deliverChanges(roomID: roomID, generation: generation, after: work.cursor)
                for event in work.live {
                    try await apply(event, roomID: roomID, generation: generation)
                    applied += 1
                }
            } catch {
                logger.warning(
                    "room delivery failed, retrying", metadata: ["room_id": "\(roomID)", "error": "\(String(reflecting: error))"])
                // Only what was not applied yet: the rest reached its sockets already.
                registry.requeue(live: work.live.dropFirst(applied), roomID: roomID, generation: generation)
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Notices from different instances can arrive in any order, and can be lost, but within
    /// a room `seq` follows commit order: reading `seq > cursor` never skips a change and
    /// never repeats one. A leave or removal is itself a change, so applied in order it cuts
    /// its user off before any later change is sent.
    private func deliverChanges(roomID: Int64, generation: Int, after cursor: Int64) async throws {
        var cursor = cursor
        while true {
            let changes = try await store.changes(roomID: roomID, after: cursor, limit: pageSize)
            guard let last = changes.last else { return }
            let rendered = changes.map { (change: $0, frames: ChangeFrame.frames(for: $0, files: files)) }
            let (stillOpen, queued) = registry.deliver(rendered, roomID: roomID, generation: generation)
            if queued > 0 { metrics.framesQueued.increment(by: Int64(queued)) }
            guard stillOpen, changes.count == pageSize else { return }
            cursor = last.seq
        }
    }

    private func apply(_ event: ChangeNotice.LiveEvent, roomID: Int64, generation: Int) async throws {
        if let frame = LiveFrame(event, roomID: roomID) {
            registry.broadcast(frame.wire, roomID: roomID, generation: generation) {
                $0.kind == .room(roomID) && $0.user.id != frame.userID
            }
            return
        }
        // A room update: each participant's user streams here get the room as they see it.
        for (userID, sessions) in registry.userStreamsByUser(roomID: roomID, generation: generation) {
            guard let summary = try await store.summary(roomID: roomID, userID: userID) else { continue }
            let frame = ServerFrame.roomUpdated(summary)
            for session in sessions { session.send(frame) }
        }
    }
}
