@testable import ChatCore
import Foundation
import NIOCore
import NIOEmbedded
import Testing

@testable import ChatServer

/// The per-subscription delivery rules of `RealtimeHub` and the write side of a socket
/// (`SocketOutbox`), on a NIO test channel instead of a network socket.
@Suite(.timeLimit(.minutes(1))) struct HubDeliveryTests {
    struct Socket {
        let session: SocketSession
        let channel: NIOAsyncTestingChannel

        /// The text of the next frame written to the channel: its header, then its payload.
        func nextFrame() async throws -> String {
            let header = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
            let payload = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
            return Self.text(header: header, payload: payload)
        }

        /// Frames written so far, without waiting.
        func writtenFrames() async throws -> [String] {
            var frames: [String] = []
            while let header = try await channel.readOutbound(as: ByteBuffer.self) {
                let payload = try #require(try await channel.readOutbound(as: ByteBuffer.self))
                frames.append(Self.text(header: header, payload: payload))
            }
            return frames
        }

        /// A final, unmasked text frame's payload, checked against its header (RFC 6455 5.2).
        static func text(header: ByteBuffer, payload: ByteBuffer) -> String {
            var header = header
            guard let first = header.readInteger(as: UInt8.self), let second = header.readInteger(as: UInt8.self) else {
                Issue.record("a frame header of \(header.readableBytes) bytes")
                return ""
            }
            #expect(first == 0x81)
            let length: Int
            switch second {
            case 126: length = Int(header.readInteger(as: UInt16.self) ?? 0)
            case 127: length = Int(header.readInteger(as: UInt64.self) ?? 0)
            default: length = Int(second)
            }
            #expect(header.readableBytes == 0 && length == payload.readableBytes)
            return String(buffer: payload)
        }

        /// The channel's buffers fill up (or drain), as when a client stops (or resumes) reading.
        func setWritable(_ writable: Bool) async throws {
            channel.isWritable = writable
            try await channel.testingEventLoop.executeInContext { channel.pipeline.fireChannelWritabilityChanged() }
        }

        /// Runs what was handed to the event loop.
        func settle() async { await channel.testingEventLoop.run() }
    }

    func makeSocket(frames: Int = 100, bytes: Int = 1 << 20, kind: SocketSession.Kind = .room(1)) async throws -> Socket {
        let channel = NIOAsyncTestingChannel()
        let session = SocketSession(
            user: User(id: 1, name: "a", isActive: true, createdAt: Date()), kind: kind,
            limits: .init(frames: frames, bytes: bytes), eventLoop: channel.eventLoop)
        try await session.install(on: channel)
        return Socket(session: session, channel: channel)
    }

    func frame(_ text: String, _ seq: Int64?) -> RoomRegistry.Outgoing {
        .init(frame: WireFrame(text: text), seq: seq)
    }

    func deliver(_ items: [RoomRegistry.Outgoing], to subscription: inout RoomRegistry.Subscription) {
        var batch = OutboundBatch()
        for item in items { RoomRegistry.deliver(item, to: &subscription, batch: &batch) }
        batch.submit()
    }

    @Test func heldBackFramesGoOutAfterCatchUpInOrderWithoutDuplicates() async throws {
        let socket = try await makeSocket()
        var subscription = RoomRegistry.Subscription(session: socket.session, cursor: 10, heldBack: [])
        // Live frames that arrive while the socket catches up are held back...
        deliver([frame("m11", 11), frame("typing", nil), frame("m12", 12), frame("m13", 13)], to: &subscription)
        #expect(subscription.heldBack?.count == 4)
        // ... the history went up to 12, so 11 and 12 were already sent by the catch-up.
        var batch = OutboundBatch()
        RoomRegistry.goLive(&subscription, after: 12, batch: &batch)
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
        let shared = WireFrame(text: #"{"type":"message"}"#)
        var batch = OutboundBatch()
        for socket in sockets { batch.add(shared, to: socket.session.outbox) }
        batch.submit()
        for socket in sockets {
            let header = try await socket.channel.waitForOutboundWrite(as: ByteBuffer.self)
            let payload = try await socket.channel.waitForOutboundWrite(as: ByteBuffer.self)
            #expect(Socket.text(header: header, payload: payload) == #"{"type":"message"}"#)
            // The same storage: no socket got a copy of its own.
            #expect(Self.sameStorage(header, shared.header) && Self.sameStorage(payload, shared.payload))
        }
    }

    static func sameStorage(_ a: ByteBuffer, _ b: ByteBuffer) -> Bool {
        a.withUnsafeReadableBytes { a in b.withUnsafeReadableBytes { b in a.baseAddress == b.baseAddress } }
    }

    @Test(arguments: [0, 125, 126, 65535, 65536])
    func framesOfEveryLengthCarryTheirLength(length: Int) throws {
        let text = String(repeating: "x", count: length)
        let frame = WireFrame(text: text)
        #expect(Socket.text(header: frame.header, payload: frame.payload) == text)
        #expect(frame.header.readableBytes == (length < 126 ? 2 : length < 65536 ? 4 : 10))
    }

    @Test func theKeepAliveDropsASocketThatSentNothingSinceItsLastPing() async throws {
        let socket = try await makeSocket()
        let outbox = socket.session.outbox
        #expect(try await socket.channel.testingEventLoop.executeInContext { outbox.keepAlive() })
        let ping = try await socket.channel.waitForOutboundWrite(as: ByteBuffer.self)
        #expect(Array(ping.readableBytesView) == [0x89, 0x00])
        _ = try await socket.channel.waitForOutboundWrite(as: ByteBuffer.self)  // its empty payload
        // The client answers (any bytes count): still alive at the next tick.
        try await socket.channel.writeInbound(ByteBuffer(bytes: [0x8A, 0x80, 0, 0, 0, 0]))
        #expect(try await socket.channel.testingEventLoop.executeInContext { outbox.keepAlive() })
        // Silence for a whole interval: dropped.
        #expect(try await socket.channel.testingEventLoop.executeInContext { outbox.keepAlive() } == false)
    }

    @Test func aBacklogWaitsForTheClientAndGoesOutInOrder() async throws {
        let socket = try await makeSocket(frames: 16)
        try await socket.setWritable(false)
        var subscription = RoomRegistry.Subscription(session: socket.session, cursor: 0, heldBack: nil)
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
        var subscription = RoomRegistry.Subscription(session: socket.session, cursor: 0, heldBack: nil)
        deliver((1...18).map { frame("m\($0)", Int64($0)) }, to: &subscription)
        #expect(await socket.session.closeRequested() == .tooSlow)
        // What waited is dropped: nothing is written once the client reads again.
        try await socket.setWritable(true)
        #expect(try await socket.writtenFrames().isEmpty)
    }

    /// A subscription held back (a user stream joining a room, a room socket catching up): a
    /// leave of its user delivered meanwhile ends it only if it is newer than the point where
    /// the user is known to be a member (else it ended an earlier membership); once live, a
    /// leave counts at once. A second registration keeps the first one's subscription.
    @Test func aLeaveWhileAUserStreamJoinsIsDecidedWhenItGoesLive() async throws {
        let stream = try await makeSocket(kind: .userStream)
        let registry = RoomRegistry()
        let leave = { (seq: Int64) -> (change: RoomChange, frames: [ChangeFrame]) in
            (RoomChange(roomID: 1, seq: seq, event: .participantLeft(userID: 1, userName: "a")), [])
        }
        let joined = try await registry.register(stream.session, roomIDs: [1], holdBack: true) { _ in [1: 10] }
        #expect(joined.joinedAt == [1: 10])
        #expect(try await registry.register(stream.session, roomIDs: [1], holdBack: false) { _ in [:] }.joinedAt.isEmpty)
        _ = registry.deliver([leave(11)], roomID: 1, generation: 1)  // before the rejoin, say
        #expect(registry.isSubscribed(stream.session, to: 1))
        registry.goLive(stream.session, roomID: 1, after: 10, memberThrough: 12)
        #expect(registry.isSubscribed(stream.session, to: 1))
        _ = registry.deliver([leave(13)], roomID: 1, generation: 1)  // a real leave, live
        #expect(!registry.isSubscribed(stream.session, to: 1))
        await stream.settle()
        #expect(try await stream.writtenFrames().map { $0.contains("room_removed") } == [true])

        // A leave newer than what the summary knew is a real one: no going live.
        let other = try await makeSocket(kind: .userStream)
        _ = try await registry.register(other.session, roomIDs: [2], holdBack: true) { _ in [2: 5] }
        _ = registry.deliver(
            [(RoomChange(roomID: 2, seq: 7, event: .participantLeft(userID: 1, userName: "a")), [])], roomID: 2,
            generation: 2)
        registry.goLive(other.session, roomID: 2, after: 5, memberThrough: 6)
        #expect(!registry.isSubscribed(other.session, to: 2))

        // The same for a room socket catching up (membership known at its admission).
        let socket = try await makeSocket(kind: .room(3))
        _ = try await registry.register(socket.session, roomIDs: [3], holdBack: true) { _ in [3: 20] }
        _ = registry.deliver(
            [(RoomChange(roomID: 3, seq: 21, event: .participantLeft(userID: 1, userName: "a")), [])], roomID: 3,
            generation: 3)
        #expect(!socket.session.isClosing)
        registry.goLive(socket.session, roomID: 3, after: 20, memberThrough: 22)
        #expect(registry.isSubscribed(socket.session, to: 3) && !socket.session.isClosing)
    }

    /// A socket closed by a batch (a removal) first gets the batch's frames: the changes
    /// before the removal.
    @Test func aBatchClosesASocketAfterItsFrames() async throws {
        let socket = try await makeSocket()
        var batch = OutboundBatch()
        batch.add(WireFrame(text: "before"), to: socket.session.outbox)
        batch.close(socket.session, with: .removed)
        batch.submit()
        await socket.settle()
        #expect(try await socket.writtenFrames() == ["before"])
        #expect(await socket.session.closeRequested() == .removed)
    }

    @Test func aBacklogPastTheByteBoundClosesWith4408() async throws {
        let socket = try await makeSocket(frames: 1000, bytes: 1000)
        try await socket.setWritable(false)
        var subscription = RoomRegistry.Subscription(session: socket.session, cursor: 0, heldBack: nil)
        let big = String(repeating: "x", count: 300)
        deliver((1...6).map { frame(big + "\($0)", Int64($0)) }, to: &subscription)
        #expect(await socket.session.closeRequested() == .tooSlow)
    }

    @Test func aCatchUpThatFallsTooFarBehindClosesWith4408() async throws {
        let socket = try await makeSocket(frames: 16)
        var subscription = RoomRegistry.Subscription(session: socket.session, cursor: 0, heldBack: [])
        deliver((1...17).map { frame("m\($0)", Int64($0)) }, to: &subscription)
        #expect(await socket.session.closeRequested() == .tooSlow)
    }

    @Test func aPacedCatchUpWaitsUntilTheBacklogIsHalfDrained() async throws {
        let socket = try await makeSocket(frames: 8)
        try await socket.setWritable(false)
        let page = (1...8).map { WireFrame(text: "c\($0)") }
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
        async let sent = socket.session.sendPaced((1...8).map { WireFrame(text: "c\($0)") })
        await socket.settle()
        socket.session.requestClose(.removed)
        #expect(await sent == false)
        try await socket.setWritable(true)
        #expect(try await socket.writtenFrames().isEmpty)
    }
}
