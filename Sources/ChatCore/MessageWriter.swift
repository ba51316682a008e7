import Logging
import NIOConcurrencyHelpers
import Postgres
import ServiceLifecycle

/// A message that passed validation, ready to be stored.
public struct ValidatedMessage: Sendable {
    public var roomID: Int64
    public var senderID: Int64
    public var content: String?
    public var type: MessageType
    public var replyToMessageID: Int64?
    public var clientMessageID: String?
    public var file: StoredFile?
}

/// Stores messages with group commit: every send that queues while a batch is being written
/// goes into the next batch, which is one call of `chat_send_messages` (`sql/0006_send_path.sql`;
/// today's version is `sql/0015_send_path_set_based.sql`): one round trip, one transaction and one WAL
/// flush for all of them, with the room locks held only inside PostgreSQL. A lone send waits
/// for nothing: an idle lane takes it at once.
///
/// A batch never waits for a room's lock: a room locked by another transaction (another
/// instance's batch committing, a psql session) is skipped, and its messages, with every later
/// message of that room on this instance, go to the waiting lane, which writes them in order
/// and does wait (up to `lock_timeout`). So one locked room holds up its own sends only, and
/// one lane can carry every other room: the larger its batches, the less each send costs
/// (Benchmarks/README.md, "Send lanes").
///
/// Each send gets its own answer: the function reports a missing room, a non-member, a bad
/// reply target or a repeated `client_message_id` per message instead of failing the batch.
/// If the batch statement itself fails with a server error (a lock timeout, say), its sends
/// are retried one by one, so only the send that cannot be stored fails. If the connection
/// breaks, every send of the batch fails with that error (503): none was acknowledged.
public final class MessageWriter: Service, Sendable {
    public struct Settings: Sendable {
        /// Batches written concurrently, each on its own pooled connection while it runs; a
        /// room's sends always share a lane. The waiting lane comes on top.
        public var lanes: Int
        /// Most sends in one batch.
        public var maxBatch: Int
        /// Whether each batch NOTIFYs every instance of its rooms' new messages (see
        /// `sql/0006_send_path.sql`); off only to measure what the wake-ups cost.
        public var announces: Bool

        public init(lanes: Int = 1, maxBatch: Int = 128, announces: Bool = true) {
            self.lanes = lanes
            self.maxBatch = maxBatch
            self.announces = announces
        }
    }

    private struct Pending: Sendable {
        var message: ValidatedMessage
        var continuation: CheckedContinuation<Result<SendOutcome, ChatError>, any Error>
    }

    /// What the batch statement says of one message.
    private enum Answer {
        /// Stored, found as a repeat, or refused: the send's result.
        case answered(Result<SendOutcome, ChatError>)
        /// Its room was locked by another transaction (only when the batch does not wait).
        case roomBusy
    }

    /// An idle lane and the batch to resume it with.
    private typealias Wake = (lane: CheckedContinuation<[Pending]?, Never>, batch: [Pending])

    /// Each lane has its own queue; a room's sends always go to the same lane (`room_id`
    /// modulo the lane count). So two batches of this instance never hold the same room's
    /// lock, and one never waits for the other's commit.
    private struct Lane {
        var queue: [Pending] = []
        var idle: CheckedContinuation<[Pending]?, Never>?
    }

    private struct State {
        /// The lanes that skip locked rooms, then the waiting lane.
        var lanes: [Lane]
        /// Rooms with messages in the waiting lane, and how many: their later messages go
        /// there too, behind them.
        var waitingRooms: [Int64: Int] = [:]
        var stopped = false
        /// Skipping lanes that have ended: the waiting lane ends after all of them, since
        /// until then one may still hand it messages.
        var finishedLanes = 0
        /// Whether this database computes search documents as `MessageSearchDocument` does
        /// (nil: not asked yet). Its words are lower-cased by the database's locale; this
        /// server lower-cases ASCII only, which every locale but a few (Turkish) agrees with.
        var searchDocumentsAgree: Bool?

        var waitingLane: Int { lanes.count - 1 }

        /// The next batch of `lane`; for a skipping lane, the messages of rooms that wait
        /// move to the waiting lane instead (in order). Returns the waiting lane's
        /// continuation and batch when that lane was idle and now has work.
        mutating func takeBatch(lane: Int, max: Int) -> (batch: [Pending], wake: Wake?) {
            var batch: [Pending] = []
            var taken = 0
            var moved = false
            for pending in lanes[lane].queue {
                if batch.count == max { break }
                taken += 1
                if lane != waitingLane, queueBehindItsRoom(pending) {
                    moved = true
                } else {
                    batch.append(pending)
                }
            }
            lanes[lane].queue.removeFirst(taken)
            return (batch, moved ? wakeWaitingLane(max: max) : nil)
        }

        /// Puts `pending` in the waiting lane when its room has messages there (so it goes
        /// behind them, not past them); false when its room does not wait.
        mutating func queueBehindItsRoom(_ pending: Pending) -> Bool {
            guard waitingRooms[pending.message.roomID] != nil else { return false }
            enqueueWaiting(pending)
            return true
        }

        private mutating func enqueueWaiting(_ pending: Pending) {
            lanes[waitingLane].queue.append(pending)
            waitingRooms[pending.message.roomID, default: 0] += 1
        }

        /// Moves `pendings` (in order) to the waiting lane.
        mutating func wait(_ pendings: [Pending], max: Int) -> Wake? {
            for pending in pendings { enqueueWaiting(pending) }
            return wakeWaitingLane(max: max)
        }

        /// The waiting lane wrote these: their rooms wait for that many fewer.
        mutating func waited(_ pendings: [Pending]) {
            for pending in pendings {
                let room = pending.message.roomID
                if let count = waitingRooms[room], count > 1 { waitingRooms[room] = count - 1 } else { waitingRooms[room] = nil }
            }
        }

        /// The waiting lane and its next batch, when it is idle and has work.
        mutating func wakeWaitingLane(max: Int) -> Wake? {
            guard let idle = lanes[waitingLane].idle, !lanes[waitingLane].queue.isEmpty else { return nil }
            lanes[waitingLane].idle = nil
            return (idle, takeBatch(lane: waitingLane, max: max).batch)
        }
    }

    private let db: PostgresClient
    private let settings: Settings
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    public init(db: PostgresClient, settings: Settings = Settings(), logger: Logger) {
        self.db = db
        self.settings = Settings(
            lanes: max(1, settings.lanes), maxBatch: max(1, settings.maxBatch), announces: settings.announces)
        self.logger = logger
        self.state = NIOLockedValueBox(State(lanes: Array(repeating: Lane(), count: self.settings.lanes + 1)))
    }

    /// Stores the message (or finds the earlier one with its `client_message_id`). Throws the
    /// database's error when the batch could not be written; a rule the message breaks is the
    /// `ChatError` of the result.
    public func store(_ message: ValidatedMessage) async throws -> Result<SendOutcome, ChatError> {
        let lane = Int(UInt64(bitPattern: message.roomID) % UInt64(settings.lanes))
        return try await withCheckedThrowingContinuation { continuation in
            enum HandOff {
                case refused, queued
                case lane(CheckedContinuation<[Pending]?, Never>, [Pending], wake: Wake?)
            }
            let handOff = state.withLockedValue { state -> HandOff in
                guard !state.stopped else { return .refused }
                state.lanes[lane].queue.append(Pending(message: message, continuation: continuation))
                guard let idle = state.lanes[lane].idle else { return .queued }
                state.lanes[lane].idle = nil
                let (batch, wake) = state.takeBatch(lane: lane, max: settings.maxBatch)
                return .lane(idle, batch, wake: wake)
            }
            switch handOff {
            case .refused:
                continuation.resume(throwing: PostgresError(.poolClosed, message: "the message writer has stopped"))
            case .queued:
                break
            case .lane(let idle, let batch, let wake):
                if let (waiting, waitingBatch) = wake { waiting.resume(returning: waitingBatch) }
                idle.resume(returning: batch)
            }
        }
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withDiscardingTaskGroup { group in
                    for lane in 0...settings.lanes {
                        group.addTask { await self.runLane(lane) }
                    }
                }
            } onCancel: {
                self.stop()
            }
        } onGracefulShutdown: {
            self.stop()
        }
    }

    /// No new sends; lanes finish what is queued, then end (the waiting lane last).
    private func stop() {
        let idle = state.withLockedValue { state in
            state.stopped = true
            var idle: [CheckedContinuation<[Pending]?, Never>] = []
            for index in state.lanes.indices where index != state.waitingLane {
                if let waiting = state.lanes[index].idle { idle.append(waiting) }
                state.lanes[index].idle = nil
            }
            return idle
        }
        for lane in idle { lane.resume(returning: nil) }
    }

    private func runLane(_ lane: Int) async {
        let waits = lane == settings.lanes
        while let batch = await nextBatch(lane: lane) {
            // A skipping lane may have moved its whole batch to the waiting lane.
            if !batch.isEmpty { await write(batch, waits: waits) }
            if waits { state.withLockedValue { $0.waited(batch) } }
        }
        guard !waits else { return }
        // The last skipping lane to end lets the waiting lane end (it is idle: it has no work).
        let waitingLane = state.withLockedValue { state -> CheckedContinuation<[Pending]?, Never>? in
            state.finishedLanes += 1
            guard state.finishedLanes == state.waitingLane, let idle = state.lanes[state.waitingLane].idle else { return nil }
            state.lanes[state.waitingLane].idle = nil
            return idle
        }
        waitingLane?.resume(returning: nil)
    }

    /// The lane's next batch, waiting while there is none; nil once stopped and drained.
    private func nextBatch(lane: Int) async -> [Pending]? {
        await withCheckedContinuation { continuation in
            let (ready, wake) = state.withLockedValue { state -> ([Pending]??, Wake?) in
                if !state.lanes[lane].queue.isEmpty {
                    let (batch, wake) = state.takeBatch(lane: lane, max: settings.maxBatch)
                    return (.some(batch), wake)
                }
                // The waiting lane ends last: a skipping lane may still hand it messages.
                if state.stopped && (lane != state.waitingLane || state.finishedLanes == state.waitingLane) {
                    return (.some(nil), nil)
                }
                state.lanes[lane].idle = continuation
                return (.none, nil)
            }
            if let (waiting, waitingBatch) = wake { waiting.resume(returning: waitingBatch) }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private func write(_ batch: [Pending], waits: Bool) async {
        do {
            let answers = try await insert(batch.map(\.message), waits: waits)
            var busy: [Pending] = []
            for (pending, answer) in zip(batch, answers) {
                switch answer {
                case .answered(let result): pending.continuation.resume(returning: result)
                case .roomBusy: busy.append(pending)
                }
            }
            if !busy.isEmpty, let (waiting, waitingBatch) = state.withLockedValue({ $0.wait(busy, max: settings.maxBatch) }) {
                waiting.resume(returning: waitingBatch)
            }
        } catch let error as PostgresError where batch.count > 1 && error.kind == .server && !error.isConnectionLoss {
            logger.notice(
                "message batch failed; storing its messages one by one",
                metadata: ["chat.batch_size": "\(batch.count)", "error": "\(String(reflecting: error))"])
            for pending in batch {
                // A room whose earlier message went to the waiting lane meanwhile: this one
                // goes behind it, not past it.
                let (moved, wake) = state.withLockedValue { state -> (Bool, Wake?) in
                    guard !waits, state.queueBehindItsRoom(pending) else { return (false, nil) }
                    return (true, state.wakeWaitingLane(max: settings.maxBatch))
                }
                if let (waiting, waitingBatch) = wake { waiting.resume(returning: waitingBatch) }
                if !moved { await write([pending], waits: waits) }
            }
        } catch {
            for pending in batch { pending.continuation.resume(throwing: error) }
        }
    }

    /// One call of `chat_send_messages`: an answer per message, in the order of `messages`.
    private func insert(_ messages: [ValidatedMessage], waits: Bool) async throws -> [Answer] {
        let documents: [String?]
        if try await searchDocumentsAgree() {
            documents = messages.map { $0.content.flatMap(MessageSearchDocument.text(of:)) }
        } else {
            documents = Array(repeating: nil, count: messages.count)
        }
        // Closures, not key paths: a key path is projected through the runtime, per element.
        let rows = try await db.query(
            """
            SELECT * FROM chat_send_messages(
                \(messages.map { $0.roomID }), \(messages.map { $0.senderID }), \(messages.map { $0.content }),
                \(messages.map { $0.type.rawValue }), \(messages.map { $0.file?.path }),
                \(messages.map { $0.file?.originalName }), \(messages.map { $0.file?.size }),
                \(messages.map { $0.file?.contentType }), \(messages.map { $0.replyToMessageID }),
                \(messages.map { $0.clientMessageID }), \(documents),
                \(settings.announces), \(waits))
            """)
        guard rows.count == messages.count else {
            throw PostgresError(.unexpectedRowCount, message: "chat_send_messages returned \(rows.count) rows for \(messages.count)")
        }
        // The rows come in no particular order; `ord` says whose each is.
        var answers = [Answer?](repeating: nil, count: messages.count)
        for row in rows {
            let index = try row.decode(Int.self, "ord") - 1
            guard messages.indices.contains(index), answers[index] == nil else {
                throw PostgresError(.decoding, message: "chat_send_messages returned a bad ord \(index + 1)", column: "ord")
            }
            answers[index] = try Self.answer(of: row, for: messages[index])
        }
        // As many rows as messages, each a different ord: every message has its answer.
        return answers.map { $0! }
    }

    /// Asks the database once whether it computes the documents of a probe text (every ASCII
    /// letter and digit, Hangul) as this server does.
    private func searchDocumentsAgree() async throws -> Bool {
        if let known = state.withLockedValue({ $0.searchDocumentsAgree }) { return known }
        let probe = "The QUICK brown fox, 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 김철수가 안녕!"
        let agree = try await db.query(
            "SELECT chat_search_document(\(probe)) = \(MessageSearchDocument.text(of: probe))::tsvector AS agree"
        ).first?.decode(Bool.self, "agree") ?? false
        if !agree { logger.notice("this database lower-cases words unlike the server: it computes every search document") }
        state.withLockedValue { $0.searchDocumentsAgree = agree }
        return agree
    }

    /// What a row of `chat_send_messages` says of `message`.
    private static func answer(of row: PostgresRow, for message: ValidatedMessage) throws -> Answer {
        let outcome = try row.decode(String.self, "outcome")
        switch outcome {
        case "room_busy": return .roomBusy
        case "created": return .answered(.success(SendOutcome(message: try Message(row: row), created: true)))
        case "existing": return .answered(.success(SendOutcome(message: try Message(row: row), created: false)))
        case "room_not_found": return .answered(.failure(.notFound("Room not found")))
        case "not_participant": return .answered(.failure(.forbidden("You are not a participant of this room")))
        case "bad_reply":
            let replyTo = message.replyToMessageID.map(String.init) ?? ""
            return .answered(.failure(.invalid("reply_to_message_id \(replyTo) is not a message of this room")))
        default:
            throw PostgresError(.decoding, message: "unknown send outcome '\(outcome)'", column: "outcome")
        }
    }
}
