import Foundation

/// Input rules from the API contract. Lengths count Unicode scalars, like PostgreSQL's
/// `char_length`, so a value accepted here never trips a CHECK constraint.
public enum Validation {
    public static let maxMessageLength = 10_000
    public static let maxClientMessageIDLength = 64

    /// Message text: at least one non-whitespace character, at most 10,000 characters.
    /// Stored exactly as sent.
    public static func messageContent(_ content: String?, field: String = "message_content") throws(ChatError)
        -> String
    {
        guard let content else { throw .invalid("\(field) is required") }
        try noNUL(content, field: field)
        guard content.contains(where: { !$0.isWhitespace }) else {
            throw .invalid("\(field) must contain a non-whitespace character")
        }
        guard content.unicodeScalars.count <= maxMessageLength else {
            throw .invalid("\(field) must be at most \(maxMessageLength) characters")
        }
        return content
    }

    /// A location message's content: JSON `{"latitude", "longitude", "name"?}` in range.
    public static func locationContent(_ content: String?, field: String = "message_content") throws(ChatError)
        -> String
    {
        let text = try messageContent(content, field: field)
        struct Location: Decodable {
            var latitude: Double
            var longitude: Double
            var name: String?
        }
        guard let location = try? JSONDecoder().decode(Location.self, from: Data(text.utf8)) else {
            throw .invalid("\(field) of a location message must be JSON with numeric latitude and longitude")
        }
        guard (-90...90).contains(location.latitude), (-180...180).contains(location.longitude) else {
            throw .invalid("latitude must be within -90...90 and longitude within -180...180")
        }
        return text
    }

    public static func content(_ content: String?, for type: MessageType) throws(ChatError) -> String {
        type == .location ? try locationContent(content) : try messageContent(content)
    }

    public static func clientMessageID(_ value: String?) throws(ChatError) -> String? {
        guard let value else { return nil }
        try noNUL(value, field: "client_message_id")
        guard (1...maxClientMessageIDLength).contains(value.unicodeScalars.count) else {
            throw .invalid("client_message_id must be 1 to \(maxClientMessageIDLength) characters")
        }
        return value
    }

    /// Registration name: trimmed, 1–50 characters, no control, format (bidi) or line
    /// separator characters (U+200D, the emoji joiner, aside), and not mixing Latin, Greek
    /// and Cyrillic letters ("pаypal" with a Cyrillic "а"). Names are unique up to case and
    /// compatibility forms: the database's `users_login_key` (sql/0010).
    public static func userName(_ name: String) throws(ChatError) -> String {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        try noNUL(trimmed, field: "user_name")
        guard (1...50).contains(trimmed.unicodeScalars.count) else {
            throw .invalid("user_name must be 1 to 50 characters after trimming")
        }
        guard !trimmed.unicodeScalars.contains(where: isInvisibleOrControl) else {
            throw .invalid("user_name must not contain control, bidi or other invisible formatting characters")
        }
        let scripts = Set(trimmed.precomposedStringWithCompatibilityMapping.unicodeScalars.compactMap(confusableScript))
        guard scripts.count <= 1 else {
            throw .invalid("user_name must not mix Latin, Greek and Cyrillic letters")
        }
        return trimmed
    }

    static func isInvisibleOrControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: return true
        case .format: return scalar != "\u{200D}"
        default: return false
        }
    }

    enum ConfusableScript { case latin, greek, cyrillic }

    /// The script of a letter among the three whose letters look alike.
    static func confusableScript(_ scalar: Unicode.Scalar) -> ConfusableScript? {
        guard scalar.properties.isAlphabetic else { return nil }
        switch scalar.value {
        case 0x41...0x5A, 0x61...0x7A, 0xC0...0x24F, 0x1E00...0x1EFF, 0x2C60...0x2C7F, 0xA720...0xA7FF:
            return .latin
        case 0x370...0x3FF, 0x1F00...0x1FFF:
            return .greek
        case 0x400...0x52F, 0x1C80...0x1C8F, 0x2DE0...0x2DFF, 0xA640...0xA69F:
            return .cyrillic
        default:
            return nil
        }
    }

    public static func password(_ password: String) throws(ChatError) -> String {
        try noNUL(password, field: "password")
        guard (8...128).contains(password.unicodeScalars.count) else {
            throw .invalid("password must be 8 to 128 characters")
        }
        return password
    }

    /// Room name: trimmed, 1–100 characters.
    public static func roomName(_ name: String) throws(ChatError) -> String {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        try noNUL(trimmed, field: "room_name")
        guard (1...100).contains(trimmed.unicodeScalars.count) else {
            throw .invalid("room_name must be 1 to 100 characters")
        }
        return trimmed
    }

    public static func roomDescription(_ description: String?) throws(ChatError) -> String? {
        guard let description else { return nil }
        try noNUL(description, field: "room_description")
        guard description.unicodeScalars.count <= 500 else {
            throw .invalid("room_description must be at most 500 characters")
        }
        return description
    }

    /// A display name taken from a token's `name` claim: trimmed, cut to 100 characters,
    /// NUL removed; nil when nothing is left.
    public static func claimedName(_ name: String?) -> String? {
        guard let name else { return nil }
        var scalars = String.UnicodeScalarView()
        scalars.append(contentsOf: name.trimmingCharacters(in: .whitespacesAndNewlines).unicodeScalars.lazy.filter { $0 != "\0" }.prefix(100))
        let cleaned = String(scalars).trimmingCharacters(in: .whitespacesAndNewlines)
        return cleaned.isEmpty ? nil : cleaned
    }

    static func noNUL(_ value: String, field: String) throws(ChatError) {
        guard !value.unicodeScalars.contains("\0") else {
            throw .invalid("\(field) must not contain NUL characters")
        }
    }
}
