@testable import ChatCore
import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import ChatServer

/// The per-subscription delivery rules of `RealtimeHub` and the write side of a socket
/// (`SocketOutbox`), on a NIO test channel instead of a network socket.
@Suite(.timeLimit(.minutes(1))) struct HubDeliveryTests {
    struct Socket {
        let session: SocketSession
        let channel: NIOAsyncTestingChannel

        /// The text of the next frame written to the channel.
        func nextFrame() async throws -> String {
            let frame = try await channel.waitForOutboundWrite(as: WebSocketFrame.self)
            #expect(frame.opcode == .text && frame.fin)
            return String(buffer: frame.data)
        }

        /// Frames written so far, without waiting.
        func writtenFrames() async throws -> [String] {
            var frames: [String] = []
            while let frame = try await channel.readOutbound(as: WebSocketFrame.self) { frames.append(String(buffer: frame.data)) }
            return frames
        }

        /// The channel's buffers fill up (or drain), as when a client stops (or resumes) reading.
        func setWritable(_ writable: Bool) async throws {
            channel.isWritable = writable
            try await channel.testingEventLoop.executeInContext { channel.pipeline.fireChannelWritabilityChanged() }
        }

        /// Runs what was handed to the event loop.
        func settle() async { await channel.testingEventLoop.run() }
    }

    func makeSocket(frames: Int = 100, bytes: Int = 1 << 20) async throws -> Socket {
        let channel = NIOAsyncTestingChannel()
        let session = SocketSession(
            user: User(id: 1, name: "a", isActive: true, createdAt: Date()), kind: .room(1),
            limits: .init(frames: frames, bytes: bytes), eventLoop: channel.eventLoop)
        try await session.install(on: channel)
        return Socket(session: session, channel: channel)
    }

    func frame(_ text: String, _ seq: Int64?) -> RealtimeHub.Outgoing {
        .init(frame: ByteBuffer(string: text), seq: seq)
    }

    func deliver(_ items: [RealtimeHub.Outgoing], to subscription: inout RealtimeHub.Subscription) {
        var batch = OutboundBatch()
        for item in items { RealtimeHub.deliver(item, to: &subscription, batch: &batch) }
        batch.submit()
    }

    @Test func heldBackFramesGoOutAfterCatchUpInOrderWithoutDuplicates() async throws {
        let socket = try await makeSocket()
        var subscription = RealtimeHub.Subscription(session: socket.session, cursor: 10, heldBack: [])
        // Live frames that arrive while the socket catches up are held back...
        deliver([frame("m11", 11), frame("typing", nil), frame("m12", 12), frame("m13", 13)], to: &subscription)
        #expect(subscription.heldBack?.count == 4)
        // ... the history went up to 12, so 11 and 12 were already sent by the catch-up.
        var batch = OutboundBatch()
        RealtimeHub.goLive(&subscription, after: 12, batch: &batch)
        batch.submit()
        #expect(subscription.heldBack == nil && subscription.cursor == 13)
        deliver([frame("m13", 13), frame("m14", 14)], to: &subscription)  // 13 seen already
        var frames: [String] = []
        for _ in 0..<3 { frames.append(try await socket.nextFrame()) }
        #expect(frames == ["typing", "m13", "m14"])
        await socket.settle()
        #expect(try await socket.writtenFrames().isEmpty)
        #expect(!socket.session.isClosing)
    }

    @Test func oneEncodedFrameIsSharedByEverySocket() async throws {
        let sockets = [try await makeSocket(), try await makeSocket(), try await makeSocket()]
        let shared = ByteBuffer(string: #"{"type":"message"}"#)
        var batch = OutboundBatch()
        for socket in sockets { batch.add(shared, to: socket.session.outbox) }
        batch.submit()
        for socket in sockets {
            let written = try await socket.channel.waitForOutboundWrite(as: WebSocketFrame.self).data
            #expect(written == shared)
            // The same storage: no socket got a copy of its own.
            let same = written.withUnsafeReadableBytes { a in shared.withUnsafeReadableBytes { b in a.baseAddress == b.baseAddress } }
            #expect(same)
        }
    }

    @Test func aBacklogWaitsForTheClientAndGoesOutInOrder() async throws {
        let socket = try await makeSocket(frames: 16)
        try await socket.setWritable(false)
        var subscription = RealtimeHub.Subscription(session: socket.session, cursor: 0, heldBack: nil)
        deliver((1...10).map { frame("m\($0)", Int64($0)) }, to: &subscription)
        await socket.settle()
        // NIO's own buffer is full: every frame waits, in order.
        #expect(try await socket.writtenFrames().isEmpty)
        try await socket.setWritable(true)
        #expect(try await socket.writtenFrames() == (1...10).map { "m\($0)" })
        #expect(!socket.session.isClosing)
    }

    @Test func aBacklogPastTheBoundClosesWith4408() async throws {
        let socket = try await makeSocket(frames: 16)
        try await socket.setWritable(false)
        var subscription = RealtimeHub.Subscription(session: socket.session, cursor: 0, heldBack: nil)
        deliver((1...18).map { frame("m\($0)", Int64($0)) }, to: &subscription)
        #expect(await socket.session.closeRequested() == .tooSlow)
        // What waited is dropped: nothing is written once the client reads again.
        try await socket.setWritable(true)
        #expect(try await socket.writtenFrames().isEmpty)
    }

    @Test func aBacklogPastTheByteBoundClosesWith4408() async throws {
        let socket = try await makeSocket(frames: 1000, bytes: 1000)
        try await socket.setWritable(false)
        var subscription = RealtimeHub.Subscription(session: socket.session, cursor: 0, heldBack: nil)
        let big = String(repeating: "x", count: 300)
        deliver((1...6).map { frame(big + "\($0)", Int64($0)) }, to: &subscription)
        #expect(await socket.session.closeRequested() == .tooSlow)
    }

    @Test func aCatchUpThatFallsTooFarBehindClosesWith4408() async throws {
        let socket = try await makeSocket(frames: 16)
        var subscription = RealtimeHub.Subscription(session: socket.session, cursor: 0, heldBack: [])
        deliver((1...17).map { frame("m\($0)", Int64($0)) }, to: &subscription)
        #expect(await socket.session.closeRequested() == .tooSlow)
    }

    @Test func aPacedCatchUpWaitsUntilTheBacklogIsHalfDrained() async throws {
        let socket = try await makeSocket(frames: 8)
        try await socket.setWritable(false)
        let page = (1...8).map { ByteBuffer(string: "c\($0)") }
        // More than the limit in one page is allowed (a catch-up page), but the sender waits.
        async let sent = socket.session.sendPaced(page)
        await socket.settle()
        #expect(!socket.session.isClosing)
        try await socket.setWritable(true)
        #expect(await sent)
        #expect(try await socket.writtenFrames() == (1...8).map { "c\($0)" })
    }

    @Test func closingDropsTheBacklogAndReleasesAWaitingCatchUp() async throws {
        let socket = try await makeSocket(frames: 8)
        try await socket.setWritable(false)
        async let sent = socket.session.sendPaced((1...8).map { ByteBuffer(string: "c\($0)") })
        await socket.settle()
        socket.session.requestClose(.removed)
        #expect(await sent == false)
        try await socket.setWritable(true)
        #expect(try await socket.writtenFrames().isEmpty)
    }
}
