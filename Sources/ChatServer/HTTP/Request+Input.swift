import ChatCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Largest JSON body accepted (uploads have their own, larger limit).
let maxJSONBodyBytes = 1 << 20

extension Request {
    /// Decodes a JSON body (whatever the Content-Type says, for lenient clients). Malformed
    /// JSON and wrong types are 422, an oversized body 413.
    func decodeJSON<T: Decodable>(_ type: T.Type, context: ChatRequestContext, allowEmpty: Bool = false) async throws
        -> T?
    {
        let buffer = try await collectBody(limit: maxJSONBodyBytes)
        if buffer.readableBytes == 0 || buffer.readableBytesView.allSatisfy({ [9, 10, 13, 32].contains($0) }) {
            if allowEmpty { return nil }
            throw APIError.validation("Request body is required")
        }
        // Invalid UTF-8 is refused wherever it sits, even in a field the endpoint ignores.
        guard String(validating: buffer.readableBytesView, as: UTF8.self) != nil else {
            throw APIError.validation("Request body is not valid UTF-8")
        }
        if let flat = T.self as? any FlatJSONDecodable.Type,
            let value = buffer.withUnsafeReadableBytes({ FlatJSON.parse($0) }).flatMap(flat.init(flatJSON:))
        {
            return value as? T
        }
        do {
            return try context.requestDecoder.decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw APIError.validation(APIError.describe(error))
        }
    }

    func decodeJSON<T: Decodable>(_ type: T.Type, context: ChatRequestContext) async throws -> T {
        try await decodeJSON(type, context: context, allowEmpty: false)!
    }

    func collectBody(limit: Int) async throws -> ByteBuffer {
        if let length = headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, "Request body is larger than \(limit) bytes")
        }
        do {
            return try await body.collect(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "Request body is larger than \(limit) bytes")
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "Request body is larger than \(limit) bytes")
        }
    }

    /// A query parameter read as an HTML form would send it (API.md: query strings are
    /// form-encoded): `+` is a space, `%2B` a plus sign. The first occurrence wins. A value
    /// that is not valid UTF-8 once decoded is 422.
    func queryParameter(_ name: String) throws -> String? {
        guard let query = uri.query, !query.isEmpty else { return nil }
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = Self.formDecoded(parts[0]) else {
                throw APIError.validation("The query string is not valid UTF-8")
            }
            guard key == name else { continue }
            guard let value = Self.formDecoded(parts.count > 1 ? parts[1] : "") else {
                throw APIError.validation("\(name) is not valid UTF-8")
            }
            return value
        }
        return nil
    }

    /// `+` as space, then percent-decoding; nil for bad escapes or bytes that are not UTF-8.
    static func formDecoded(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// An optional integer query parameter within `range`, else 422.
    func queryInt(_ name: String, default defaultValue: Int? = nil, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = try queryParameter(name) else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            let bounds =
                range.upperBound == Int.max
                ? "an integer >= \(range.lowerBound)" : "an integer in \(range.lowerBound)...\(range.upperBound)"
            throw APIError.validation("\(name) must be \(bounds)")
        }
        return value
    }

    func queryID(_ name: String) throws -> Int64? {
        guard let text = try queryParameter(name) else { return nil }
        guard let value = Int64(text), value >= 0 else {
            throw APIError.validation("\(name) must be a non-negative integer")
        }
        return value
    }
}

extension Request {
    /// The client's address, for per-client rate limits: the connection's peer, or with
    /// `trustingForwardedFor` (behind a proxy that appends it) the last `X-Forwarded-For` entry.
    func clientAddress(context: ChatRequestContext, trustingForwardedFor: Bool) -> String {
        if trustingForwardedFor, let forwarded = headers[values: .xForwardedFor].last,
            let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty
        {
            return last
        }
        return context.remoteAddress?.ipAddress ?? "unknown"
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}

extension ChatRequestContext {
    /// An integer path parameter: not an integer is 422 (wrong type), an integer that
    /// cannot be an id is 404 (no such resource).
    func pathID(_ name: String) throws -> Int64 {
        guard let text = parameters.get(name), let value = Int64(text) else {
            throw APIError.validation("\(name) must be an integer")
        }
        guard value > 0 else { throw APIError(.notFound, "Not Found") }
        return value
    }
}

/// A request body that `FlatJSON` can read without `JSONDecoder` when it is a flat object of
/// exactly its snake_case keys with values of the right types; any other body goes through
/// `JSONDecoder` (nil here), which decides, and words any error, as for every other body.
protocol FlatJSONDecodable: Decodable {
    init?(flatJSON fields: [String: FlatJSON.Value])
}

extension [String: FlatJSON.Value] {
    /// The field as an optional string: `.some(nil)` for null or absent, nil for another type.
    func optionalString(_ key: String) -> String?? {
        switch self[key] {
        case nil, .null?: return .some(nil)
        case .string(let text)?: return .some(text)
        default: return nil
        }
    }

    func optionalInteger(_ key: String) -> Int64?? {
        switch self[key] {
        case nil, .null?: return .some(nil)
        case .integer(let value)?: return .some(value)
        default: return nil
        }
    }
}
