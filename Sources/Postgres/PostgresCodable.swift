import Foundation

/// A PostgreSQL type OID, used to type bound parameters.
public struct PostgresType: Sendable, Hashable, CustomStringConvertible {
    public var oid: UInt32
    public var name: String

    public init(oid: UInt32, name: String) {
        self.oid = oid
        self.name = name
    }

    public var description: String { name }

    public static let bool = PostgresType(oid: 16, name: "boolean")
    public static let int8 = PostgresType(oid: 20, name: "bigint")
    public static let int2 = PostgresType(oid: 21, name: "smallint")
    public static let int4 = PostgresType(oid: 23, name: "integer")
    public static let text = PostgresType(oid: 25, name: "text")
    public static let json = PostgresType(oid: 114, name: "json")
    public static let float8 = PostgresType(oid: 701, name: "double precision")
    public static let int8Array = PostgresType(oid: 1016, name: "bigint[]")
    public static let textArray = PostgresType(oid: 1009, name: "text[]")
    public static let timestamptz = PostgresType(oid: 1184, name: "timestamp with time zone")
    public static let jsonb = PostgresType(oid: 3802, name: "jsonb")
    /// Lets the server infer the type from context.
    public static let unknown = PostgresType(oid: 0, name: "unknown")
}

/// A Swift value that can be bound as a query parameter (in PostgreSQL's text format).
public protocol PostgresEncodable: Sendable {
    static var postgresType: PostgresType { get }
    /// The value in PostgreSQL's text input format.
    var postgresText: String { get }
}

/// A Swift value that can be decoded from a column in PostgreSQL's text output format.
public protocol PostgresDecodable {
    /// Parses the column's text; returns nil when the text is not a valid value of this type.
    static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Self?
    /// The value for SQL NULL, or nil when this type cannot represent NULL.
    static var postgresNull: Self? { get }
}

extension PostgresDecodable {
    public static var postgresNull: Self? { nil }
}

public typealias PostgresCodable = PostgresEncodable & PostgresDecodable

// MARK: - Optional

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Wrapped?? {
        Wrapped.decode(postgresText: bytes).map { .some($0) }
    }

    public static var postgresNull: Wrapped?? { .some(nil) }
}

// MARK: - Integers

@inline(__always)
func parseInteger<T: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, as: T.Type) -> T? {
    guard !bytes.isEmpty else { return nil }
    var index = 0
    var negative = false
    if bytes[0] == UInt8(ascii: "-") {
        negative = true
        index = 1
    } else if bytes[0] == UInt8(ascii: "+") {
        index = 1
    }
    guard index < bytes.count else { return nil }
    var value: T = 0
    while index < bytes.count {
        let digit = bytes[index] &- UInt8(ascii: "0")
        guard digit < 10 else { return nil }
        let (times10, o1) = value.multipliedReportingOverflow(by: 10)
        let (next, o2) =
            negative
            ? times10.subtractingReportingOverflow(T(digit)) : times10.addingReportingOverflow(T(digit))
        guard !o1, !o2 else { return nil }
        value = next
        index += 1
    }
    return value
}

extension Int: PostgresCodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Int? { parseInteger(bytes, as: Int.self) }
}

extension Int64: PostgresCodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Int64? {
        parseInteger(bytes, as: Int64.self)
    }
}

extension Int32: PostgresCodable {
    public static var postgresType: PostgresType { .int4 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Int32? {
        parseInteger(bytes, as: Int32.self)
    }
}

extension Int16: PostgresCodable {
    public static var postgresType: PostgresType { .int2 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Int16? {
        parseInteger(bytes, as: Int16.self)
    }
}

// MARK: - Bool, Double, String

extension Bool: PostgresCodable {
    public static var postgresType: PostgresType { .bool }
    public var postgresText: String { self ? "t" : "f" }
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Bool? {
        guard bytes.count == 1 else { return nil }
        switch bytes[0] {
        case UInt8(ascii: "t"): return true
        case UInt8(ascii: "f"): return false
        default: return nil
        }
    }
}

extension Double: PostgresCodable {
    public static var postgresType: PostgresType { .float8 }
    public var postgresText: String {
        if isNaN { return "NaN" }
        if isInfinite { return self < 0 ? "-Infinity" : "Infinity" }
        return "\(self)"
    }
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Double? {
        let text = String(decoding: bytes, as: UTF8.self)
        switch text {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return Double(text)
        }
    }
}

extension String: PostgresCodable {
    public static var postgresType: PostgresType { .text }
    public var postgresText: String { self }
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> String? {
        String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: - Date (timestamptz)

extension Date: PostgresCodable {
    public static var postgresType: PostgresType { .timestamptz }
    public var postgresText: String { PostgresTimestamp.format(self) }
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> Date? {
        PostgresTimestamp.parse(bytes)
    }
}

// MARK: - Arrays (bigint[], text[])

/// A type whose arrays can be bound as parameters.
public protocol PostgresArrayElement: Sendable {
    static var arrayType: PostgresType { get }
    /// The element as it appears inside an array literal.
    var arrayElementText: String { get }
}

extension Int64: PostgresArrayElement {
    public static var arrayType: PostgresType { .int8Array }
    public var arrayElementText: String { String(self) }
}

extension String: PostgresArrayElement {
    public static var arrayType: PostgresType { .textArray }
    /// Always quoted, with `"` and `\` escaped, so that any text (commas, braces, NULL) is data.
    public var arrayElementText: String {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        // By UTF-8 byte: both escaped characters are ASCII, and no other character's
        // encoding contains their bytes.
        guard utf8.contains(where: { $0 == quote || $0 == backslash }) else { return "\"" + self + "\"" }
        var quoted = [UInt8]()
        quoted.reserveCapacity(utf8.count + 8)
        quoted.append(quote)
        for byte in utf8 {
            if byte == quote || byte == backslash { quoted.append(backslash) }
            quoted.append(byte)
        }
        quoted.append(quote)
        return String(decoding: quoted, as: UTF8.self)
    }
}

/// An absent element is SQL NULL inside the array (`{1,NULL,3}`), for columns of a batch
/// that are optional per row.
extension Optional: PostgresArrayElement where Wrapped: PostgresArrayElement {
    public static var arrayType: PostgresType { Wrapped.arrayType }
    public var arrayElementText: String { self?.arrayElementText ?? "NULL" }
}

extension Array: PostgresEncodable where Element: PostgresArrayElement {
    public static var postgresType: PostgresType { Element.arrayType }
    public var postgresText: String {
        var text = "{"
        for (index, element) in enumerated() {
            if index > 0 { text.append(",") }
            text.append(element.arrayElementText)
        }
        text.append("}")
        return text
    }
}

extension Array: PostgresDecodable where Element == Int64 {
    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> [Int64]? {
        guard bytes.count >= 2, bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else {
            return nil
        }
        var result: [Int64] = []
        var start = 1
        let end = bytes.count - 1
        if start == end { return [] }
        var index = start
        while index <= end {
            if index == end || bytes[index] == UInt8(ascii: ",") {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                guard let value = parseInteger(slice, as: Int64.self) else { return nil }  // NULL elements too
                result.append(value)
                start = index + 1
            }
            index += 1
        }
        return result
    }
}

// MARK: - JSON

/// A value stored as JSON text (json or jsonb columns), encoded with `JSONEncoder`.
public struct PostgresJSON<Value: Codable & Sendable>: PostgresCodable {
    public var value: Value

    public init(_ value: Value) {
        self.value = value
    }

    public static var postgresType: PostgresType { .jsonb }

    public var postgresText: String {
        // Encoding a Codable value to JSON only fails for non-finite floats.
        guard let data = try? JSONEncoder().encode(value) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    public static func decode(postgresText bytes: UnsafeRawBufferPointer) -> PostgresJSON<Value>? {
        guard let value = try? JSONDecoder().decode(Value.self, from: Data(bytes)) else { return nil }
        return PostgresJSON(value)
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
