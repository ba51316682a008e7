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
    private let states = NIOLockedValueBox<[Int32: SocketState]>([:])
    private let stopped = NIOLockedValueBox(false)
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
        case waiting(CheckedContinuation<Void, Never>)
        case ready
    }

    /// Suspends until `socket` has become ready since the last wait (or hung up / is in
    /// error: the caller's next libpq call reports that). Sockets are registered once,
    /// edge-triggered, so a wait costs no system call. Only one task may wait on a given
    /// socket at a time; the caller must have drained what was readable before waiting.
    func wait(for socket: Int32) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyReady = states.withLockedValue { states -> Bool in
                if case .ready = states[socket] {
                    states[socket] = nil
                    return true
                }
                states[socket] = .waiting(continuation)
                return false
            }
            if alreadyReady { continuation.resume() }
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
        let waiter = states.withLockedValue { states -> CheckedContinuation<Void, Never>? in
            guard case .waiting(let continuation) = states[socket] else {
                states[socket] = .ready
                return nil
            }
            states[socket] = nil
            return continuation
        }
        waiter?.resume()
    }

    /// Stops watching a socket that is about to be closed.
    func forget(_ socket: Int32) {
        var event = epoll_event()
        epoll_ctl(epoll, EPOLL_CTL_DEL, socket, &event)
        if case .waiting(let continuation) = states.withLockedValue({ $0.removeValue(forKey: socket) }) {
            continuation.resume()
        }
    }

    func shutdown() {
        stopped.withLockedValue { $0 = true }
        var byte: UInt8 = 1
        _ = write(wakePipe.write, &byte, 1)
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while !stopped.withLockedValue({ $0 }) {
            let count = epoll_wait(epoll, &events, Int32(events.count), -1)
            if count < 0 {
                if errno == EINTR { continue }
                break
            }
            for index in 0..<Int(count) {
                let socket = events[index].data.fd
                if socket == wakePipe.read { continue }
                let waiter = states.withLockedValue { states -> CheckedContinuation<Void, Never>? in
                    if case .waiting(let continuation) = states[socket] {
                        states[socket] = nil
                        return continuation
                    }
                    states[socket] = .ready
                    return nil
                }
                waiter?.resume()
            }
        }
        // Nobody will be woken any more: release every waiter so it can fail in libpq.
        let remaining = states.withLockedValue { states in
            defer { states = [:] }
            return states.values
        }
        for case .waiting(let continuation) in remaining { continuation.resume() }
        close(epoll)
        close(wakePipe.read)
        close(wakePipe.write)
    }
}
#endif
