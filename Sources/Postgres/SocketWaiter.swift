#if os(Linux)
import CLibPQ
import Glibc
import NIOConcurrencyHelpers
import Foundation

/// Waits for sockets to become readable or writable without blocking any Swift
/// concurrency or NIO thread: one dedicated thread runs `epoll_wait` (edge-triggered) for
/// every socket of a client and resumes the task waiting on a socket when it is ready.
final class SocketWaiter: @unchecked Sendable {
    private let epoll: Int32
    private let wakePipe: (read: Int32, write: Int32)
    private let state = NIOLockedValueBox(State())
    private var thread: Thread?

    init() {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epoll >= 0, "epoll_create1 failed: \(errno)")
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0, "pipe failed: \(errno)")
        wakePipe = (fds[0], fds[1])
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakePipe.read
        epoll_ctl(epoll, EPOLL_CTL_ADD, wakePipe.read, &event)
        let thread = Thread { [self] in self.loop() }
        thread.name = "postgres-socket-waiter"
        self.thread = thread
        thread.start()
    }

    /// Per socket: the task waiting for it, or readiness that arrived while nobody waited.
    private enum SocketState {
        case waiting(CheckedContinuation<Void, any Error>)
        case ready
    }

    private struct State {
        var sockets: [Int32: SocketState] = [:]
        var stopped = false
    }

    static var stoppedError: PostgresError { PostgresError(.poolClosed, message: "postgres client shut down") }

    /// Suspends until `socket` has become ready since the last wait (or hung up / is in
    /// error: the caller's next libpq call reports that). Sockets are registered once,
    /// edge-triggered, so a wait costs no system call. Only one task may wait on a given
    /// socket at a time; the caller must have drained what was readable before waiting.
    func wait(for socket: Int32) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let outcome = state.withLockedValue { state -> Result<Bool, PostgresError> in
                // After shutdown nobody would wake the task: fail instead of hanging.
                if state.stopped { return .failure(Self.stoppedError) }
                if case .ready = state.sockets[socket] {
                    state.sockets[socket] = nil
                    return .success(true)
                }
                state.sockets[socket] = .waiting(continuation)
                return .success(false)
            }
            switch outcome {
            case .success(true): continuation.resume()
            case .success(false): break
            case .failure(let error): continuation.resume(throwing: error)
            }
        }
    }

    /// Starts watching a newly opened socket.
    func register(_ socket: Int32) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
        event.data.fd = socket
        epoll_ctl(epoll, EPOLL_CTL_ADD, socket, &event)
    }

    /// Resumes the task waiting on `socket`, if any, as if the socket were ready.
    func interrupt(_ socket: Int32) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, any Error>? in
            guard case .waiting(let continuation) = state.sockets[socket] else {
                state.sockets[socket] = .ready
                return nil
            }
            state.sockets[socket] = nil
            return continuation
        }
        waiter?.resume()
    }

    /// Stops watching a socket that is about to be closed.
    func forget(_ socket: Int32) {
        var event = epoll_event()
        epoll_ctl(epoll, EPOLL_CTL_DEL, socket, &event)
        if case .waiting(let continuation) = state.withLockedValue({ $0.sockets.removeValue(forKey: socket) }) {
            continuation.resume()
        }
    }

    /// Stops the thread. Tasks waiting now, and any that would wait later, fail with
    /// `.poolClosed` instead of waiting for ever.
    func shutdown() {
        let waiting = state.withLockedValue { state -> [SocketState] in
            guard !state.stopped else { return [] }
            state.stopped = true
            // Written under the lock: the loop closes the pipe only after it saw `stopped`.
            var byte: UInt8 = 1
            _ = write(wakePipe.write, &byte, 1)
            defer { state.sockets = [:] }
            return Array(state.sockets.values)
        }
        for case .waiting(let continuation) in waiting { continuation.resume(throwing: Self.stoppedError) }
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while !state.withLockedValue({ $0.stopped }) {
            let count = epoll_wait(epoll, &events, Int32(events.count), -1)
            if count < 0 {
                if errno == EINTR { continue }
                // epoll itself failed: fail every waiter now and later rather than hang them.
                shutdown()
                break
            }
            for index in 0..<Int(count) {
                let socket = events[index].data.fd
                if socket == wakePipe.read { continue }
                let waiter = state.withLockedValue { state -> CheckedContinuation<Void, any Error>? in
                    if case .waiting(let continuation) = state.sockets[socket] {
                        state.sockets[socket] = nil
                        return continuation
                    }
                    state.sockets[socket] = .ready
                    return nil
                }
                waiter?.resume()
            }
        }
        close(epoll)
        close(wakePipe.read)
        close(wakePipe.write)
    }
}
#endif
