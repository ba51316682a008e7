import ChatCore
import Foundation
import Hummingbird

/// `/auth/register`, `/auth/login`, `/auth/me`: built-in accounts with bcrypt passwords.
struct AuthController {
    let users: UserStore
    let tokens: TokenService
    let hasher: PasswordHasher
    let decoyHash: String
    let tokenLifetime: Duration
    let limits: RateLimits
    let trustForwardedFor: Bool

    struct Credentials: Decodable {
        var userName: String
        var password: String
    }

    struct RegisterResponse: ResponseEncodable {
        var userId: Int64
        var userName: String
        var createdAt: Date
    }

    struct LoginResponse: ResponseEncodable {
        var accessToken: String
        var tokenType: String
        var expiresIn: Int
        var userId: Int64
        var userName: String
    }

    struct MeResponse: ResponseEncodable {
        var userId: Int64
        var userName: String
    }

    func addRoutes(public routes: Routes, authenticated: Routes) {
        routes.on("register", .post) { request, context in
            let address = request.clientAddress(context: context, trustingForwardedFor: trustForwardedFor)
            if let wait = limits.registrationsByAddress.take(address) {
                throw APIError.rateLimited(wait, "Too many registrations from this address; try again later")
            }
            let credentials = try await request.decodeJSON(Credentials.self, context: context)
            let name = try Validation.userName(credentials.userName)
            let password = try Validation.password(credentials.password)
            let user = try await users.register(name: name, passwordHash: try await hasher.hash(password))
            return EditedResponse(
                status: .created, response: RegisterResponse(userId: user.id, userName: user.name, createdAt: user.createdAt))
        }
        routes.on("login", .post) { request, context in
            let credentials = try await request.decodeJSON(Credentials.self, context: context)
            let name = credentials.userName.trimmingCharacters(in: .whitespacesAndNewlines)
            // Online guessing: failed logins are limited per user name and per client address
            // (successful ones are not); a limited attempt is refused before any hashing.
            let address = request.clientAddress(context: context, trustingForwardedFor: trustForwardedFor)
            let nameKey = name.lowercased()
            if let wait = limits.loginFailuresByName.check(nameKey) ?? limits.loginFailuresByAddress.check(address) {
                throw APIError.rateLimited(wait, "Too many failed logins; try again later")
            }
            let rejected = APIError.unauthorized("Incorrect user name or password")
            func failed() -> APIError {
                _ = limits.loginFailuresByName.take(nameKey)
                _ = limits.loginFailuresByAddress.take(address)
                return rejected
            }
            guard !name.isEmpty, !name.unicodeScalars.contains("\0"), !credentials.password.isEmpty,
                let account = try await users.loginAccount(name: name)
            else {
                _ = try await hasher.verify(credentials.password, hash: decoyHash)
                throw failed()
            }
            switch try await hasher.verify(credentials.password, hash: account.passwordHash) {
            case .invalid:
                throw failed()
            case .valid(needsRehash: true):
                // An old scheme or another BCRYPT_COST: store the current one.
                try await users.replacePasswordHash(
                    userID: account.user.id, old: account.passwordHash, new: try await hasher.hash(credentials.password))
            case .valid(needsRehash: false):
                break
            }
            let token = try await tokens.issue(userID: account.user.id, name: account.user.name)
            return LoginResponse(
                accessToken: token, tokenType: "bearer", expiresIn: Int(tokenLifetime.components.seconds), userId: account.user.id,
                userName: account.user.name)
        }
        authenticated.on("me", .get) { _, context in
            let user = try context.requireUser()
            return MeResponse(userId: user.id, userName: user.name)
        }
    }
}
