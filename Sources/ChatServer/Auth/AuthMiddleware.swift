import ChatCore
import Foundation
import Hummingbird

/// Authenticates `/chat` requests from `Authorization: Bearer <JWT>` and puts the user in
/// the context. The user is created or renamed from the token's claims.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ChatRequestContext

    let tokens: TokenService
    let users: UserStore
    let cache: AuthenticatedUserCache

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let token = Self.bearerToken(request) else {
            throw APIError.unauthorized("Not authenticated")
        }
        var context = context
        let user = try await authenticate(token: token)
        context.user = user
        context.authenticatedUserID.withLockedValue { $0 = user.id }
        context.logger[metadataKey: "chat.user_id"] = "\(user.id)"
        return try await next(request, context)
    }

    /// The active user a valid token names (401 for a bad token, 403 for a deactivated user).
    func authenticate(token: String) async throws -> User {
        try await authenticateWithExpiry(token: token).user
    }

    /// The same, with the token's `exp` (a WebSocket is closed when its token expires).
    func authenticateWithExpiry(token: String) async throws -> (user: User, tokenExpiresAt: Date) {
        let found: (user: User, tokenExpiresAt: Date)
        if let cached = cache.user(token: token) {
            found = cached
        } else {
            let claims: (userID: Int64, name: String?, expiresAt: Date)
            do {
                claims = try await tokens.verify(token)
            } catch {
                throw APIError.unauthorized("Invalid or expired token")
            }
            let user = try await users.userFromToken(id: claims.userID, claimedName: claims.name)
            cache.remember(user, token: token, tokenExpiresAt: claims.expiresAt)
            found = (user, claims.expiresAt)
        }
        guard found.user.isActive else { throw APIError(.forbidden, "User account is deactivated") }
        return found
    }

    static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        // Blanks around it trimmed by byte: Foundation's trimming goes through NSString and
        // UTF-16 on every request. (A token is base64url: other whitespace makes it invalid.)
        let bytes = parts[1].utf8
        let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = bytes.firstIndex(where: { !isBlank($0) }), let last = bytes.lastIndex(where: { !isBlank($0) })
        else { return nil }
        return String(parts[1][first...last])
    }
}
