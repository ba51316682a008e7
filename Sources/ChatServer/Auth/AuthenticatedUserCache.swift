import ChatCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Remembers, for a short time, which user each verified token names and what that user
/// looks like, so that authenticating a request costs neither a signature check nor a
/// database round trip. A token is remembered at most `lifetime` and never past its own
/// expiry; a user at most `lifetime`, shared by all their tokens (so a rename through one
/// token shows through every other). An operator's deactivation, made in the database,
/// takes effect when the entry expires: within `lifetime`.
final class AuthenticatedUserCache: Sendable {
    private struct State {
        var tokens: [String: (userID: Int64, tokenExpiresAt: Date, expires: NIODeadline)] = [:]
        var users: [Int64: (user: User, expires: NIODeadline)] = [:]
    }

    private let lifetime: TimeAmount
    private let state = NIOLockedValueBox(State())
    /// Past this many entries the expired ones are dropped (and, if none had expired, all).
    static let maxEntries = 100_000

    init(lifetime: Duration) {
        let (seconds, attoseconds) = lifetime.components
        self.lifetime = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    var isEnabled: Bool { lifetime > .zero }

    /// The user a token names and the token's `exp`, if remembered.
    func user(token: String) -> (user: User, tokenExpiresAt: Date)? {
        guard isEnabled else { return nil }
        let now = NIODeadline.now()
        return state.withLockedValue { state in
            guard let entry = state.tokens[token], entry.expires > now,
                let user = state.users[entry.userID], user.expires > now
            else { return nil }
            return (user.user, entry.tokenExpiresAt)
        }
    }

    func remember(_ user: User, token: String, tokenExpiresAt: Date) {
        let tokenExpiresIn = tokenExpiresAt.timeIntervalSinceNow
        guard isEnabled, tokenExpiresIn > 0 else { return }
        let now = NIODeadline.now()
        let tokenLifetime = TimeAmount.nanoseconds(Int64(min(tokenExpiresIn, 86_400 * 365) * 1_000_000_000))
        state.withLockedValue { state in
            if state.tokens.count >= Self.maxEntries || state.users.count >= Self.maxEntries {
                state.tokens = state.tokens.filter { $0.value.expires > now }
                state.users = state.users.filter { $0.value.expires > now }
                if state.tokens.count >= Self.maxEntries || state.users.count >= Self.maxEntries { state = State() }
            }
            state.tokens[token] = (user.id, tokenExpiresAt, now + min(lifetime, tokenLifetime))
            state.users[user.id] = (user, now + lifetime)
        }
    }
}
