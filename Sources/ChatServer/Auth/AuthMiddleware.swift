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
        context.user = try await authenticate(token: token)
        return try await next(request, context)
    }

    func authenticate(token: String) async throws -> User {
        let user: User
        if let cached = cache.user(token: token) {
            user = cached
        } else {
            let claims: (userID: Int64, name: String?, expiresAt: Date)
            do {
                claims = try await tokens.verify(token)
            } catch {
                throw APIError.unauthorized("Invalid or expired token")
            }
            user = try await users.userFromToken(id: claims.userID, claimedName: claims.name)
            cache.remember(user, token: token, tokenExpiresIn: claims.expiresAt.timeIntervalSinceNow)
        }
        guard user.isActive else { throw APIError(.forbidden, "User account is deactivated") }
        return user
    }

    static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}
