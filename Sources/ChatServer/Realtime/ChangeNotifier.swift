import ChatCore
import Logging
import Prometheus
import NIOConcurrencyHelpers
import Postgres
import ServiceLifecycle

/// Announces committed changes to every instance (its own included) with PostgreSQL NOTIFY.
///
/// Never inside the writing transaction: NOTIFY takes a cluster-wide lock at commit and
/// holds it through the WAL flush, which would serialise all senders. Instead notices are
/// queued after commit and one sender task sends them in batches, one `pg_notify` per
/// batch of up to ~7.9 kB, on its own connection with `synchronous_commit = off` (a
/// notification need not be durable, so its commit does not wait for the disk). While one
/// batch is on the wire the next one gathers, so the NOTIFY rate stays bounded whatever
/// the send rate. A lost notification costs latency, not messages: the hub also polls.
final class ChangeNotifier: ChatEventSink, Service {
    private let postgres: PostgresClient
    private let logger: Logger
    /// Notices not sent yet, and the length past which they are coalesced next (twice what
    /// the last coalescing left, so that a queue of notices that cannot be dropped is not
    /// scanned again on every send).
    private struct Queue {
        var notices: [ChangeNotice] = []
        var coalesceAt = ChangeNotifier.maxPending

        mutating func coalesceIfLong() -> Int {
            guard notices.count > coalesceAt else { return 0 }
            let dropped = ChangeNotifier.coalesce(&notices)
            coalesceAt = max(ChangeNotifier.maxPending, 2 * notices.count)
            return dropped
        }
    }

    private let pending = NIOLockedValueBox(Queue())
    private let wakeUps: AsyncStream<Void>
    private let wakeUp: AsyncStream<Void>.Continuation

    /// How long the first notice of a batch waits for others (0: send at once).
    private let batchWindow: Duration

    private let metrics: ServerMetrics

    init(postgres: PostgresClient, batchWindow: Duration, metrics: ServerMetrics, logger: Logger) {
        self.postgres = postgres
        self.metrics = metrics
        self.batchWindow = batchWindow
        self.logger = logger
        (wakeUps, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func publish(_ event: ChatEvent) async {
        // New messages are announced by the statement that stores them (MessageWriter).
        if case .messageCreated = event { return }
        send(ChangeNotice(event))
    }

    func send(_ notice: ChangeNotice) {
        let dropped = pending.withLockedValue { pending in
            pending.notices.append(notice)
            return pending.coalesceIfLong()
        }
        if dropped > 0 { record(dropped: dropped) }
        wakeUp.yield()
    }

    func run() async throws {
        var connection: PostgresConnection?
        await withGracefulShutdownHandler {
            for await _ in wakeUps {
                if batchWindow > .zero { try? await Task.sleep(for: batchWindow) }
                await flush(&connection)
            }
            // Shutting down: what was queued before the stream finished still goes out.
            await flush(&connection)
        } onGracefulShutdown: {
            self.wakeUp.finish()
        }
    }

    /// Notices queued before the queue is coalesced (`coalesce`).
    static let maxPending = 10_000

    /// Shrinks a queue that passed `maxPending` (the database is unreachable, or a flood of
    /// typing) without losing an event that matters: a copy of an idempotent notice (a
    /// wake-up: whoever reads after the last copy reads what every copy announced), and a
    /// presence or typing state superseded by a later one of the same user in the same room,
    /// are dropped; then, if still too long, the remaining typing notices, which are
    /// live-only. Returns how many notices were dropped; the order of the rest is kept.
    static func coalesce(_ pending: inout [ChangeNotice]) -> Int {
        let before = pending.count
        enum Key: Hashable {
            case notice(ChangeNotice)
            case typing(roomID: Int64, userID: Int64)
            case presence(roomID: Int64, userID: Int64)
        }
        var seen = Set<Key>()
        var kept: [ChangeNotice] = []
        kept.reserveCapacity(pending.count)
        for notice in pending.reversed() {
            let key: Key =
                switch notice {
                case .live(let roomID, .typing(let userID, _, _)): .typing(roomID: roomID, userID: userID)
                case .live(let roomID, .presence(let userID, _, _)): .presence(roomID: roomID, userID: userID)
                default: .notice(notice)
                }
            guard seen.insert(key).inserted else { continue }
            kept.append(notice)
        }
        kept.reverse()
        if kept.count > maxPending {
            kept.removeAll { if case .live(_, .typing) = $0 { true } else { false } }
        }
        pending = kept
        return before - kept.count
    }

    private func record(dropped: Int) {
        metrics.droppedNotices.increment(by: Int64(dropped))
        logger.warning(
            "change notifications coalesced: repeated wake-ups and superseded presence or typing dropped",
            metadata: ["chat.dropped": "\(dropped)"])
    }

    private func flush(_ connection: inout PostgresConnection?) async {
        let notices = pending.withLockedValue { pending in
            defer { pending = Queue() }
            return pending.notices
        }
        var sent = 0
        for batch in ChangeNotice.batches(notices) {
            do {
                if connection == nil {
                    let opened = try await postgres.openDedicatedConnection()
                    _ = try await opened.simpleQuery("SET synchronous_commit = off")
                    connection = opened
                }
                try await connection!.execute("SELECT pg_notify(\(ChangeNotice.channel), \(batch.payload))")
                metrics.notifyBatchesSent.increment()
                sent = batch.end
            } catch {
                connection = nil
                requeue(notices[sent...])
                logger.warning(
                    "could not send change notifications; retrying in 1 s",
                    metadata: ["error": "\(String(reflecting: error))", "pending": "\(notices.count - sent)"])
                try? await Task.sleep(for: .seconds(1))
                wakeUp.yield()
                return
            }
        }
    }

    /// Puts unsent notices back in front of newer ones, coalescing past `maxPending`.
    private func requeue(_ unsent: ArraySlice<ChangeNotice>) {
        let dropped = pending.withLockedValue { pending in
            pending.notices = Array(unsent) + pending.notices
            return pending.coalesceIfLong()
        }
        if dropped > 0 { record(dropped: dropped) }
    }
}
