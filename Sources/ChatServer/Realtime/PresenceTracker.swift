import ChatCore
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Keeps this instance's share of presence in the database and announces transitions.
///
/// Sockets are counted here per (user, room); only the first open and the last close on
/// this instance touch the database (`PresenceStore`), which decides whether the user's
/// status changed across all instances and, if so, `user_status` is announced on the room.
/// Transitions of one user run in order on one of a few worker queues. The service also
/// heartbeats this instance and reaps instances that stopped heartbeating (killed, frozen):
/// their users go offline within about `expiry + heartbeat`.
///
/// What sockets see converges to what REST shows within a heartbeat after a fault: when a
/// presence write failed, or this instance was reaped while it stalled, the next heartbeat
/// compares the database's rows for this instance with the sockets it holds and fixes
/// (and announces) each difference, in order with that user's other transitions. A
/// restart with the same INSTANCE_ID announces who went offline with the old process.
final class PresenceTracker: Service {
    struct Key: Hashable {
        var userID: Int64
        var roomID: Int64
    }

    private enum Change {
        case opened(Key, userName: String, done: CheckedContinuation<Void, Never>)
        case closed(Key, userName: String)
        /// Make the database's row for the key match the sockets held now.
        case reconcile(Key, userName: String)
    }

    private struct Held {
        var sockets: Int
        var userName: String
    }

    private let store: PresenceStore
    private let notifier: ChangeNotifier
    private let heartbeat: Duration
    private let logger: Logger
    private let counts = NIOLockedValueBox<[Key: Held]>([:])
    /// A presence write failed since the last reconciliation.
    private let diverged = NIOLockedValueBox(false)
    private let queues: [(stream: AsyncStream<Change>, continuation: AsyncStream<Change>.Continuation)]

    init(store: PresenceStore, notifier: ChangeNotifier, heartbeat: Duration, logger: Logger) {
        self.store = store
        self.notifier = notifier
        self.heartbeat = heartbeat
        self.logger = logger
        self.queues = (0..<4).map { _ in AsyncStream.makeStream(of: Change.self) }
    }

    /// Counts a socket; returns once the database knows the user is online here.
    func socketOpened(userID: Int64, userName: String, roomID: Int64) async {
        let key = Key(userID: userID, roomID: roomID)
        await withCheckedContinuation { continuation in
            // Counting and queueing under one lock keeps a quick close-and-reopen in order.
            let queued = counts.withLockedValue { counts -> Bool in
                counts[key, default: Held(sockets: 0, userName: userName)].sockets += 1
                guard counts[key]?.sockets == 1 else { return false }
                let result = queue(for: userID).yield(.opened(key, userName: userName, done: continuation))
                if case .terminated = result { return false }  // shutting down
                return true
            }
            if !queued { continuation.resume() }
        }
    }

    func socketClosed(userID: Int64, userName: String, roomID: Int64) {
        let key = Key(userID: userID, roomID: roomID)
        counts.withLockedValue { counts in
            counts[key, default: Held(sockets: 1, userName: userName)].sockets -= 1
            guard counts[key]!.sockets <= 0 else { return }
            counts[key] = nil
            queue(for: userID).yield(.closed(key, userName: userName))
        }
    }

    private func queue(for userID: Int64) -> AsyncStream<Change>.Continuation {
        queues[Int(UInt64(bitPattern: userID) % UInt64(queues.count))].continuation
    }

    func run() async throws {
        // A restart with the same INSTANCE_ID: the previous process's sessions are stale.
        await leave()
        _ = try? await store.heartbeat()
        await withTaskGroup(of: Void.self) { changes in
            for queue in queues {
                changes.addTask {
                    for await change in queue.stream { await self.apply(change) }
                }
            }
            await withTaskGroup(of: Void.self) { beats in
                beats.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: self.heartbeat)
                        if Task.isCancelled { break }
                        await self.beat()
                    }
                }
                try? await gracefulShutdown()
                beats.cancelAll()
            }
            // Sockets have closed by now (the HTTP server stops first): let their changes
            // finish (so `offline` and `last_seen` are written), then leave.
            for queue in queues { queue.continuation.finish() }
            await changes.waitForAll()
        }
        await leave()
    }

    /// Removes this instance's rows and announces who went offline with them.
    private func leave() async {
        do {
            for gone in try await store.unregister() {
                announce(Key(userID: gone.userID, roomID: gone.roomID), userName: gone.userName, online: false)
            }
        } catch {
            // At start, the previous process's rows are still there: the next heartbeat
            // reconciles them (announcing who went offline with it) instead.
            diverged.withLockedValue { $0 = true }
            logger.warning("presence unregister failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    private func apply(_ change: Change) async {
        do {
            switch change {
            case .opened(let key, let userName, let done):
                defer { done.resume() }
                if try await store.opened(userID: key.userID, roomID: key.roomID) {
                    announce(key, userName: userName, online: true)
                }
            case .closed(let key, let userName):
                if try await store.closed(userID: key.userID, roomID: key.roomID) {
                    announce(key, userName: userName, online: false)
                }
            case .reconcile(let key, let userName):
                // Both writes are idempotent and announce only a real change of the row.
                if counts.withLockedValue({ $0[key] != nil }) {
                    if try await store.opened(userID: key.userID, roomID: key.roomID) {
                        announce(key, userName: userName, online: true)
                    }
                } else if try await store.closed(userID: key.userID, roomID: key.roomID) {
                    announce(key, userName: userName, online: false)
                }
            }
        } catch {
            diverged.withLockedValue { $0 = true }
            logger.warning("presence update failed; reconciling at the next heartbeat", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// Queues a reconciliation of every key held here or recorded in the database.
    private func reconcile(reason: String) async throws {
        var names: [Key: String] = [:]
        for row in try await store.sessions() { names[Key(userID: row.userID, roomID: row.roomID)] = row.userName }
        counts.withLockedValue { counts in
            for (key, held) in counts { names[key] = held.userName }
        }
        logger.warning("reconciling presence", metadata: ["reason": "\(reason)", "sessions": "\(names.count)"])
        for (key, userName) in names { queue(for: key.userID).yield(.reconcile(key, userName: userName)) }
    }

    private func announce(_ key: Key, userName: String, online: Bool) {
        guard key.roomID != 0 else { return }
        notifier.send(.live(roomID: key.roomID, .presence(userID: key.userID, userName: userName, online: online)))
    }

    private func beat() async {
        do {
            let reaped = try await !store.heartbeat()
            if reaped || diverged.withLockedValue({ $0 }) {
                // Reaped while it stalled past the expiry (its rows are gone, and the others
                // announced its users offline), or a write failed: make the rows match.
                diverged.withLockedValue { $0 = false }
                do {
                    try await reconcile(reason: reaped ? "this instance was reaped after a stall" : "a presence write failed")
                } catch {
                    diverged.withLockedValue { $0 = true }  // try again at the next heartbeat
                    throw error
                }
            }
            for gone in try await store.reapDeadInstances() {
                announce(Key(userID: gone.userID, roomID: gone.roomID), userName: gone.userName, online: false)
            }
        } catch {
            logger.warning("presence heartbeat failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }
}
