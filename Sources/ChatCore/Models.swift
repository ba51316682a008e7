import Foundation

public struct User: Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var isActive: Bool
    public var createdAt: Date
}

public enum RoomType: String, Sendable, Codable, CaseIterable {
    case direct
    case group
}

public struct Room: Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var type: RoomType
    public var description: String?
    public var maxParticipants: Int
    public var createdBy: Int64
    public var isActive: Bool
    public var createdAt: Date
    public var updatedAt: Date
    /// The room's newest change number (`sql/0009_change_sequence.sql`).
    public var seq: Int64
}

/// A room as one user sees it in their room list.
public struct RoomSummary: Sendable, Equatable {
    public var room: Room
    public var participantCount: Int
    public var lastMessage: String?
    public var unreadCount: Int
}

public struct Participant: Sendable, Equatable {
    public var id: Int64
    public var roomID: Int64
    public var userID: Int64
    public var userName: String
    public var joinedAt: Date
    public var lastReadAt: Date?
    public var isActive: Bool
}

public enum MessageType: String, Sendable, Codable, CaseIterable {
    case text
    case image
    case file
    case voice
    case location

    /// Types whose payload is an uploaded file (sent as multipart/form-data).
    public var carriesFile: Bool {
        switch self {
        case .image, .file, .voice: true
        case .text, .location: false
        }
    }
}

public struct Message: Sendable, Equatable {
    public var id: Int64
    public var roomID: Int64
    public var senderID: Int64
    public var senderName: String
    /// Nil for deleted messages and for file messages without a caption.
    public var content: String?
    public var type: MessageType
    /// Path of the stored file relative to the upload directory; nil when deleted.
    public var filePath: String?
    public var fileName: String?
    public var fileSize: Int64?
    public var replyToMessageID: Int64?
    public var clientMessageID: String?
    public var isEdited: Bool
    public var isDeleted: Bool
    public var editedAt: Date?
    public var createdAt: Date
    public var updatedAt: Date
    /// The change number of the message's creation in its room.
    public var seq: Int64
}

/// A user's read position in a room after marking it read.
public struct ReadState: Sendable, Equatable {
    public var roomID: Int64
    public var userID: Int64
    public var userName: String
    public var lastReadAt: Date?
    public var lastReadMessageID: Int64
    public var unreadCount: Int
    /// Whether the user lets others see their read receipts in this room.
    public var readReceiptsEnabled: Bool
}

/// One page of a room's history.
public struct MessagePage: Sendable, Equatable {
    public var messages: [Message]
    public var totalCount: Int
    public var hasMore: Bool
}

/// Which slice of a room's history to read.
public enum MessageWindow: Sendable, Equatable {
    /// Page `page` (1-based) of `size` messages, newest first.
    case page(page: Int, size: Int)
    /// The `size` newest messages with id < `id`, newest first.
    case before(id: Int64, size: Int)
    /// The `size` oldest messages with id > `id`, oldest first.
    case after(id: Int64, size: Int)
}

/// The row offset of 1-based page `page`; saturates instead of overflowing for huge pages.
func offset(page: Int, size: Int) -> Int {
    let (value, overflow) = (page - 1).multipliedReportingOverflow(by: size)
    return overflow ? Int.max : value
}
