import ChatCore
import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import Postgres

/// The request context of every route: the authenticated user (set by `AuthMiddleware`)
/// and the JSON coders that make the wire format snake_case with UTC `Z` timestamps.
public struct ChatRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AuthMiddleware` on `/chat` routes.
    public var user: User?
    /// The authenticated user's id, shared with the middleware outside `AuthMiddleware`
    /// (the access log line).
    let authenticatedUserID = NIOLockedValueBox<Int64?>(nil)
    /// The peer of the connection (a proxy's address behind one: see `Request.clientAddress`).
    public let remoteAddress: SocketAddress?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.user = nil
        self.remoteAddress = source.channel.remoteAddress
    }

    public var requestDecoder: JSONDecoder { ChatJSON.decoder() }
    public var responseEncoder: JSONEncoder { ChatJSON.encoder() }

    /// The authenticated user; only called on routes behind `AuthMiddleware`.
    func requireUser() throws -> User {
        guard let user else { throw APIError.unauthorized("Not authenticated") }
        return user
    }
}

/// The wire format's JSON coders, configured in one place.
public enum ChatJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatTimestamp(date))
        }
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    /// `2025-09-02T11:03:17.123456Z`: UTC, microseconds (PostgreSQL's precision).
    public static func formatTimestamp(_ date: Date) -> String {
        // PostgreSQL's text form is `2025-09-02 11:03:17.123456+00` (always UTC here).
        var utf8 = Array(PostgresTimestamp.format(date).utf8.dropLast(3))
        if let space = utf8.firstIndex(of: UInt8(ascii: " ")) { utf8[space] = UInt8(ascii: "T") }
        utf8.append(UInt8(ascii: "Z"))
        return String(decoding: utf8, as: UTF8.self)
    }
}
