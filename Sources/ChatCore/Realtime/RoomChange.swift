import Foundation

/// One entry of a room's change sequence (`sql/0009_change_sequence.sql`): what a socket
/// receives as an event frame carrying `seq`, live or when it catches up with `last_seq`.
public struct RoomChange: Sendable, Equatable {
    public enum Event: Sendable, Equatable {
        case messageCreated(Message)
        case messageUpdated(Message)
        case messageDeleted(Message)
        /// A read mark. `unreadCount`: the reader's unread messages after that position;
        /// `receipts`: whether the reader let others see it.
        case messageRead(Reader, receipts: Bool)
        case participantJoined(userID: Int64, userName: String)
        case participantLeft(userID: Int64, userName: String)
    }

    public struct Reader: Sendable, Equatable {
        public var userID: Int64
        public var userName: String
        public var lastReadAt: Date?
        public var lastReadMessageID: Int64
        public var unreadCount: Int
    }

    public var roomID: Int64
    public var seq: Int64
    public var event: Event
}

/// Where a room's change sequence stands: its newest number, and the highest number that
/// may be missing from the kept window (a cursor below it cannot be caught up).
public struct ChangeWindow: Sendable, Equatable {
    public var lastMessageID: Int64
    public var lastSeq: Int64
    public var floor: Int64

    /// Whether every change after `seq` can still be replayed.
    public func canReplay(after seq: Int64) -> Bool {
        seq >= floor && seq <= lastSeq
    }
}
