import Foundation

/// A parsed JSON value.
public enum JSONValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode([String: JSONValue].self) {
            self = .object(value)
        } else {
            self = .array(try container.decode([JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// Parses JSON text.
    public init(parsing text: String) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// Compact JSON text with sorted keys.
    public var jsonText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "null"
    }

    public var description: String { jsonText }

    public var stringValue: String? { if case .string(let v) = self { v } else { nil } }
    public var boolValue: Bool? { if case .bool(let v) = self { v } else { nil } }
    /// Integers, and doubles with an integral value.
    public var intValue: Int64? {
        switch self {
        case .int(let v): v
        case .double(let v) where v.rounded() == v && abs(v) < 9.2e18: Int64(v)
        default: nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .int(let v): Double(v)
        case .double(let v): v
        default: nil
        }
    }
    public var isNull: Bool { self == .null }
    public var arrayValue: [JSONValue]? { if case .array(let v) = self { v } else { nil } }
    public var objectValue: JSONObject? {
        if case .object(let v) = self { JSONObject(fields: v) } else { nil }
    }
}

/// A JSON object received from the server (the raw text plus its parsed fields).
public struct JSONObject: Sendable, Equatable, Encodable, CustomStringConvertible {
    /// The JSON text this object was parsed from (re-encoded for nested objects).
    public let raw: String
    public let fields: [String: JSONValue]

    public struct NotAnObject: Error, CustomStringConvertible {
        public let text: String
        public var description: String { "not a JSON object: \(abbreviated(text))" }
    }

    /// Parses `text`, which must hold a JSON object.
    public init(parsing text: String) throws {
        guard case .object(let fields) = try? JSONValue(parsing: text) else { throw NotAnObject(text: text) }
        self.raw = text
        self.fields = fields
    }

    public init(fields: [String: JSONValue]) {
        self.fields = fields
        self.raw = JSONValue.object(fields).jsonText
    }

    public subscript(key: String) -> JSONValue? { fields[key] }

    /// The "type" field.
    public var type: String? { string("type") }
    public func has(_ key: String) -> Bool { fields[key] != nil }
    /// True if the key is present with the value `null`.
    public func isNull(_ key: String) -> Bool { fields[key] == .null }
    public func string(_ key: String) -> String? { fields[key]?.stringValue }
    public func int(_ key: String) -> Int64? { fields[key]?.intValue }
    public func double(_ key: String) -> Double? { fields[key]?.doubleValue }
    public func bool(_ key: String) -> Bool? { fields[key]?.boolValue }
    public func object(_ key: String) -> JSONObject? { fields[key]?.objectValue }
    public func array(_ key: String) -> [JSONValue]? { fields[key]?.arrayValue }
    /// The array under `key` if all its elements are objects.
    public func objects(_ key: String) -> [JSONObject]? {
        guard let values = array(key) else { return nil }
        let objects = values.compactMap(\.objectValue)
        return objects.count == values.count ? objects : nil
    }

    /// Decodes the raw text as `T`.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(raw.utf8))
    }

    public func encode(to encoder: any Encoder) throws {
        try JSONValue.object(fields).encode(to: encoder)
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool { lhs.fields == rhs.fields }

    public var description: String { raw }
}

func abbreviated(_ text: String, limit: Int = 600) -> String {
    text.count <= limit ? text : String(text.prefix(limit)) + "… (\(text.utf8.count) bytes)"
}
