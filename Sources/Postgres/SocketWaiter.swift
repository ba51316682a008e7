#if os(Linux)
import CLibPQ
import Glibc
import NIOConcurrencyHelpers
import Foundation

/// Waits for sockets to become readable or writable without blocking any Swift
/// concurrency or NIO thread: one dedicated thread runs `epoll_wait` for every socket of
/// a client and resumes the waiting task when its socket is ready.
final class SocketWaiter: @unchecked Sendable {
    enum Interest {
        case readable
        case readableOrWritable
    }

    private let epoll: Int32
    private let wakePipe: (read: Int32, write: Int32)
    private let waiting = NIOLockedValueBox<[Int32: CheckedContinuation<Void, Never>]>([:])
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

    /// Suspends until `socket` is ready (or hung up / in error: the caller's next libpq call
    /// reports that). Only one task may wait on a given socket at a time.
    func wait(for socket: Int32, _ interest: Interest) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            waiting.withLockedValue { $0[socket] = continuation }
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLONESHOT.rawValue | EPOLLRDHUP.rawValue
            if interest == .readableOrWritable { event.events |= EPOLLOUT.rawValue }
            event.data.fd = socket
            if epoll_ctl(epoll, EPOLL_CTL_MOD, socket, &event) != 0 {
                if epoll_ctl(epoll, EPOLL_CTL_ADD, socket, &event) != 0 {
                    // Not a pollable socket any more: let the caller find out from libpq.
                    let pending = waiting.withLockedValue { $0.removeValue(forKey: socket) }
                    pending?.resume()
                }
            }
        }
    }

    /// Stops watching a socket that is about to be closed.
    func forget(_ socket: Int32) {
        var event = epoll_event()
        epoll_ctl(epoll, EPOLL_CTL_DEL, socket, &event)
        waiting.withLockedValue { $0.removeValue(forKey: socket) }?.resume()
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
                waiting.withLockedValue { $0.removeValue(forKey: socket) }?.resume()
            }
        }
        // Nobody will be woken any more: release every waiter so it can fail in libpq.
        for continuation in waiting.withLockedValue({ state in defer { state = [:] }; return Array(state.values) }) {
            continuation.resume()
        }
        close(epoll)
        close(wakePipe.read)
        close(wakePipe.write)
    }
}
#endif
