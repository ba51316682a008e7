@testable import ChatCore
import Foundation
import Testing

@testable import ChatServer

/// The per-subscription delivery rules of `RealtimeHub`, without a database.
@Suite(.timeLimit(.minutes(1))) struct HubDeliveryTests {
    func makeSession(frames: Int = 100) -> SocketSession {
        SocketSession(
            user: User(id: 1, name: "a", isActive: true, createdAt: Date()), kind: .room(1),
            limits: .init(frames: frames, bytes: 1 << 20))
    }

    @Test func heldBackFramesGoOutAfterCatchUpInOrderWithoutDuplicates() async {
        let socket = makeSession()
        var subscription = RealtimeHub.Subscription(session: socket, cursor: 10, heldBack: [])
        // Live frames that arrive while the socket catches up are held back...
        let live: [RealtimeHub.Outgoing] = [
            .init(frame: "m11", seq: 11), .init(frame: "typing", seq: nil),
            .init(frame: "m12", seq: 12), .init(frame: "m13", seq: 13),
        ]
        for item in live { RealtimeHub.deliver(item, to: &subscription) }
        #expect(subscription.heldBack?.count == 4)
        // ... the history went up to 12, so 11 and 12 were already sent by the catch-up.
        RealtimeHub.goLive(&subscription, after: 12)
        #expect(subscription.heldBack == nil && subscription.cursor == 13)
        RealtimeHub.deliver(.init(frame: "m13", seq: 13), to: &subscription)  // seen already
        RealtimeHub.deliver(.init(frame: "m14", seq: 14), to: &subscription)
        var frames: [String] = []
        for _ in 0..<3 { frames.append(await socket.nextFrame() ?? "closed") }
        #expect(frames == ["typing", "m13", "m14"])
        #expect(!socket.isClosing)
    }

    @Test func aBacklogPastTheBoundClosesWith4408() async {
        let socket = makeSession(frames: 16)
        var subscription = RealtimeHub.Subscription(session: socket, cursor: 0, heldBack: nil)
        for id in 1...17 { RealtimeHub.deliver(.init(frame: "m\(id)", seq: Int64(id)), to: &subscription) }
        #expect(await socket.closeRequested() == .tooSlow)
        #expect(await socket.nextFrame() == nil)
    }

    @Test func aCatchUpThatFallsTooFarBehindClosesWith4408() async {
        let socket = makeSession(frames: 16)
        var subscription = RealtimeHub.Subscription(session: socket, cursor: 0, heldBack: [])
        for id in 1...17 { RealtimeHub.deliver(.init(frame: "m\(id)", seq: Int64(id)), to: &subscription) }
        #expect(await socket.closeRequested() == .tooSlow)
    }
}
