import ChatCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// One open WebSocket as the hub sees it: who it belongs to, and its bounded queue of
/// frames not yet written.
///
/// The hub never waits on a socket: it appends to the queue, and the socket's own writer
/// task drains it at the client's pace. A client that does not keep up lets the queue pass
/// its bound; the session then asks to be closed with 4408, so it costs bounded memory and
/// never slows the other subscribers.
final class SocketSession: Sendable {
    enum Kind: Sendable, Equatable {
        case room(Int64)
        case userStream
    }

    struct CloseRequest: Sendable, Equatable {
        var code: Int
        var reason: String

        static let normal = CloseRequest(code: 1000, reason: "")
        /// The instance is shutting down: reconnect (with a jittered delay) and resume.
        static let goingAway = CloseRequest(code: 1001, reason: "Server is shutting down; reconnect")
        static let tooSlow = CloseRequest(code: 4408, reason: "Client too slow: outbound queue limit reached")
        static let removed = CloseRequest(code: 4403, reason: "You are no longer a participant of this room")
        static let deactivated = CloseRequest(code: 4403, reason: "User account is deactivated")
        static let expired = CloseRequest(code: 4401, reason: "Token expired")
        static let tooManySockets = CloseRequest(code: 4429, reason: "Too many open sockets for this user")
    }

    struct Limits: Sendable {
        var frames: Int
        var bytes: Int
        /// Counts frames refused at the bound.
        var dropped: Counter?
    }

    /// Why a waiting writer resumes: a frame handed to it directly, the session closing,
    /// or frames queued that it should take in order.
    private enum WriterWakeUp {
        case frame(String)
        case closing
        case queued
    }

    private struct State {
        var queue = CircularBuffer<String>()
        var queuedBytes = 0
        var writer: CheckedContinuation<WriterWakeUp, Never>?
        var spaceWaiters: [CheckedContinuation<Void, Never>] = []
        var closeRequest: CloseRequest?
        var closeWaiter: CheckedContinuation<CloseRequest, Never>?
        var subscribed = false
        var subscribedWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private static let ids = NIOLockedValueBox(0)

    let id: Int
    let user: User
    let kind: Kind
    let limits: Limits
    /// The token's `exp`: the socket is closed (4401) once it passes.
    let tokenExpiresAt: Date
    private let state = NIOLockedValueBox(State())

    /// Sessions alive (`chat_ws_sessions`): the number of open sockets, unless one leaks.
    static let alive = NIOLockedValueBox(0)

    deinit {
        Self.alive.withLockedValue { $0 -= 1 }
    }

    init(user: User, kind: Kind, limits: Limits, tokenExpiresAt: Date = .distantFuture) {
        Self.alive.withLockedValue { $0 += 1 }
        self.id = Self.ids.withLockedValue {
            $0 += 1
            return $0
        }
        self.user = user
        self.kind = kind
        self.limits = limits
        self.tokenExpiresAt = tokenExpiresAt
    }

    var isClosing: Bool { state.withLockedValue { $0.closeRequest != nil } }

    /// Queues a frame. Past the bound the session asks to close with 4408 and drops it.
    @discardableResult
    func send(_ frame: String) -> Bool {
        enum Action { case none, resumeWriter(CheckedContinuation<WriterWakeUp, Never>), overflow }
        let action: Action = state.withLockedValue { state in
            guard state.closeRequest == nil else { return .none }
            if !state.queue.isEmpty && (state.queue.count >= limits.frames || state.queuedBytes + frame.utf8.count > limits.bytes) {
                return .overflow
            }
            if let writer = state.writer {
                state.writer = nil
                return .resumeWriter(writer)
            }
            state.queue.append(frame)
            state.queuedBytes += frame.utf8.count
            return .none
        }
        switch action {
        case .none: return true
        case .resumeWriter(let writer):
            writer.resume(returning: .frame(frame))
            return true
        case .overflow:
            limits.dropped?.increment()
            requestClose(.tooSlow)
            return false
        }
    }

    /// Queues a frame once the queue is at most half full (catch-up paces itself this way
    /// instead of overflowing). Returns false when the session is closing.
    func sendWhenSpace(_ frame: String) async -> Bool {
        while true {
            let hasRoom: Bool = state.withLockedValue { state in
                state.closeRequest != nil || isHalfEmpty(state, adding: frame.utf8.count)
            }
            if hasRoom { return send(frame) }
            await withCheckedContinuation { continuation in
                let resumeNow: Bool = state.withLockedValue { state in
                    if state.closeRequest != nil || isHalfEmpty(state, adding: frame.utf8.count) { return true }
                    state.spaceWaiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }

    private func isHalfEmpty(_ state: State, adding bytes: Int) -> Bool {
        // An empty queue takes any frame, however large, so a big one cannot stall catch-up.
        state.queue.isEmpty || (state.queue.count < limits.frames / 2 && state.queuedBytes + bytes <= limits.bytes / 2)
    }

    /// The next frame to write; nil once the session is closing.
    func nextFrame() async -> String? {
        while true {
            let (frame, waiters, closing): (String?, [CheckedContinuation<Void, Never>], Bool) =
                state.withLockedValue { state in
                    guard state.closeRequest == nil else { return (nil, [], true) }
                    guard let frame = state.queue.popFirst() else { return (nil, [], false) }
                    state.queuedBytes -= frame.utf8.count
                    defer { state.spaceWaiters = [] }
                    return (frame, state.spaceWaiters, false)
                }
            waiters.forEach { $0.resume() }
            if closing { return nil }
            if let frame { return frame }
            let wakeUp: WriterWakeUp = await withCheckedContinuation { continuation in
                let immediate: WriterWakeUp? = state.withLockedValue { state in
                    if state.closeRequest != nil { return .closing }
                    if !state.queue.isEmpty { return .queued }
                    state.writer = continuation
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
            switch wakeUp {
            case .frame(let frame): return frame
            case .closing: return nil
            case .queued: continue  // frames arrived meanwhile: take them in order
            }
        }
    }

    /// Marks the session as joined to its rooms (live frames reach it from now on).
    func markSubscribed() {
        let waiters = state.withLockedValue { state in
            state.subscribed = true
            defer { state.subscribedWaiters = [] }
            return state.subscribedWaiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Waits until `markSubscribed()` or a close request.
    func subscribed() async {
        await withCheckedContinuation { continuation in
            let now: Bool = state.withLockedValue { state in
                if state.subscribed || state.closeRequest != nil { return true }
                state.subscribedWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Asks the socket's handler to close with `request`; the first request wins.
    func requestClose(_ request: CloseRequest) {
        let (writer, waiters, closeWaiter) = state.withLockedValue { state in
            guard state.closeRequest == nil else {
                return (CheckedContinuation<WriterWakeUp, Never>?.none, [CheckedContinuation<Void, Never>](), CheckedContinuation<CloseRequest, Never>?.none)
            }
            state.closeRequest = request
            state.queue.removeAll()
            state.queuedBytes = 0
            defer {
                state.writer = nil
                state.spaceWaiters = []
                state.closeWaiter = nil
                state.subscribedWaiters = []
            }
            return (state.writer, state.spaceWaiters + state.subscribedWaiters, state.closeWaiter)
        }
        writer?.resume(returning: .closing)
        waiters.forEach { $0.resume() }
        closeWaiter?.resume(returning: request)
    }

    /// Waits until someone asks the session to close.
    func closeRequested() async -> CloseRequest {
        await withCheckedContinuation { continuation in
            let request: CloseRequest? = state.withLockedValue { state in
                if let request = state.closeRequest { return request }
                state.closeWaiter = continuation
                return nil
            }
            if let request { continuation.resume(returning: request) }
        }
    }
}
