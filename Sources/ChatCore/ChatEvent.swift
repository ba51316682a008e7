/// Something that happened and that live clients should hear about. Produced by the
/// stores after their transaction committed; delivered by a `ChatEventSink`.
public enum ChatEvent: Sendable, Equatable {
    case roomCreated(roomID: Int64, participantIDs: [Int64])
    case messageCreated(Message)
    case messageUpdated(Message)
    case messageDeleted(Message)
    case messageRead(ReadState)
    case participantJoined(roomID: Int64, userID: Int64, userName: String)
    case participantLeft(roomID: Int64, userID: Int64, userName: String)
}

/// Receives committed changes. The real-time layer implements it to fan events out to
/// WebSocket subscribers on every instance; it must not throw back into the request.
public protocol ChatEventSink: Sendable {
    func publish(_ event: ChatEvent) async
}

/// A sink that drops every event (used when nothing listens).
public struct DiscardingEventSink: ChatEventSink {
    public init() {}
    public func publish(_ event: ChatEvent) async {}
}
