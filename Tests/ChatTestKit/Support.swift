import NIOConcurrencyHelpers
import NIOCore

/// Thrown when something awaited did not happen in time.
public struct TestKitTimeout: Error, CustomStringConvertible {
    /// What was awaited, e.g. "a frame of type \"message\" after 10 seconds".
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Duration {
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

extension EventLoopFuture where Value: Sendable {
    /// The future's value, or `TestKitTimeout(what)` if it is not complete within `timeout`.
    func get(timeout: Duration, _ what: @autoclosure () -> String) async throws -> Value {
        let promise = eventLoop.makePromise(of: Value.self)
        let message = what()
        let timer = eventLoop.scheduleTask(in: timeout.timeAmount) {
            promise.fail(TestKitTimeout("timed out after \(timeout) waiting for \(message)"))
        }
        cascade(to: promise)
        defer { timer.cancel() }
        return try await promise.futureResult.get()
    }
}

/// A FIFO async mutex: one holder at a time, without blocking threads.
final class AsyncSerialLock: Sendable {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = NIOLockedValueBox(State())

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLockedValue { state in
                if state.busy {
                    state.waiters.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
