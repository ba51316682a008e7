import ChatCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1

/// An error response of the API: a status and the `{"detail": "..."}` body.
public struct APIError: Error, HTTPResponseError, Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var detail: String
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, _ detail: String, headers: HTTPFields = [:]) {
        self.status = status
        self.detail = detail
        self.headers = headers
    }

    public static func unauthorized(_ detail: String) -> APIError {
        APIError(.unauthorized, detail, headers: [.wwwAuthenticate: "Bearer"])
    }

    /// 429 with `Retry-After` (whole seconds).
    static func rateLimited(_ wait: Duration, _ detail: String) -> APIError {
        APIError(.tooManyRequests, detail, headers: [.retryAfter: "\(max(1, wait.wholeSecondsRoundedUp))"])
    }

    public static func validation(_ detail: String) -> APIError {
        APIError(.unprocessableContent, detail)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try ChatJSON.encoder().encode(["detail": detail])
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension APIError {
    /// The one place where failures become HTTP statuses.
    static func from(_ error: any Error) -> APIError? {
        switch error {
        case let error as APIError:
            return error
        case let error as ChatError:
            switch error {
            case .notFound(let detail): return APIError(.notFound, detail)
            case .forbidden(let detail): return APIError(.forbidden, detail)
            case .invalid(let detail): return APIError(.unprocessableContent, detail)
            case .notAllowed(let detail): return APIError(.badRequest, detail)
            case .conflict(let detail): return APIError(.conflict, detail)
            case .unauthorized(let detail): return .unauthorized(detail)
            }
        case let error as HTTPError:
            switch error.status {
            case .contentTooLarge: return APIError(.contentTooLarge, "Request body is too large")
            case .notFound: return APIError(.notFound, "Not Found")
            case .methodNotAllowed: return APIError(.methodNotAllowed, "Method Not Allowed")
            case .badRequest: return APIError(.unprocessableContent, error.body ?? "Malformed request")
            default: return APIError(error.status, error.body ?? error.status.reasonPhrase, headers: error.headers)
            }
        case let error as DecodingError:
            return APIError(.unprocessableContent, describe(error))
        case is NIOTooManyBytesError:
            // A chunked body past the limit (a declared Content-Length is checked up front).
            return APIError(.contentTooLarge, "Request body is too large")
        case is HTTPParserError:
            // A body NIO cannot parse (a bad chunk size…): the connection closes after this.
            return APIError(.badRequest, "Malformed HTTP request body")
        case is PasswordHasher.Busy:
            return APIError(.serviceUnavailable, "Too many sign-ins in progress, try again", headers: [.retryAfter: "1"])
        default:
            return nil
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            let keys = codingPath.map { key in key.intValue.map { "[\($0)]" } ?? snakeCase(key.stringValue) }
            return keys.isEmpty ? "body" : keys.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)): expected \(jsonTypeName(type))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)): expected \(jsonTypeName(type)), got null"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): field required"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "Request body is not valid JSON" }
            return "\(path(context.codingPath)): invalid value"
        @unknown default:
            return "Invalid request body"
        }
    }

    private static func jsonTypeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "a boolean"
        case is [Int64].Type, is [Int].Type: "an array of integers"
        case is [String].Type: "an array of strings"
        default:
            // Never a Swift type name: containers by their JSON name, anything else generically.
            String(describing: type).hasPrefix("Dictionary")
                ? "an object" : String(describing: type).hasPrefix("Array") ? "an array" : "a value of another type"
        }
    }

    private static func snakeCase(_ key: String) -> String {
        var result = ""
        for character in key {
            if character.isUppercase {
                result += "_" + character.lowercased()
            } else {
                result.append(character)
            }
        }
        return result
    }
}
