import ChatCore
import Logging
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
    private let pending = NIOLockedValueBox<[ChangeNotice]>([])
    private let wakeUps: AsyncStream<Void>
    private let wakeUp: AsyncStream<Void>.Continuation

    /// How long the first notice of a batch waits for others (0: send at once).
    private let batchWindow: Duration

    init(postgres: PostgresClient, batchWindow: Duration, logger: Logger) {
        self.postgres = postgres
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
        pending.withLockedValue { pending in
            pending.append(notice)
            if pending.count > Self.maxPending { pending.removeFirst() }
        }
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

    /// Notices kept while the database is unreachable; past this the oldest are dropped
    /// (messages are still delivered then: instances poll their rooms' heads).
    static let maxPending = 10_000

    private func flush(_ connection: inout PostgresConnection?) async {
        let notices = pending.withLockedValue { pending in
            defer { pending = [] }
            return pending
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

    /// Puts unsent notices back in front of newer ones, keeping at most `maxPending`.
    private func requeue(_ unsent: ArraySlice<ChangeNotice>) {
        let dropped = pending.withLockedValue { pending in
            pending = Array(unsent) + pending
            let excess = max(0, pending.count - Self.maxPending)
            pending.removeFirst(excess)
            return excess
        }
        if dropped > 0 {
            logger.error("dropped change notifications while the database is unreachable", metadata: ["count": "\(dropped)"])
        }
    }
}
