import ChatCore
import NIOConcurrencyHelpers
import NIOCore

/// Remembers, for a short time, the user each token named, so that authenticating a request
/// costs no database round trip. An entry is reused only for the same `name` claim (a changed
/// claim renames the user, which needs the database). An operator's deactivation, made in the
/// database, takes effect when the entry expires: within `lifetime`.
final class AuthenticatedUserCache: Sendable {
    private struct Entry {
        var user: User
        var claimedName: String?
        var expires: NIODeadline
    }

    private let lifetime: TimeAmount
    private let entries = NIOLockedValueBox<[Int64: Entry]>([:])
    /// Past this many entries the expired ones are dropped (and, if none had expired, all).
    static let maxEntries = 100_000

    init(lifetime: Duration) {
        self.lifetime = .nanoseconds(Int64(lifetime.components.seconds) * 1_000_000_000 + lifetime.components.attoseconds / 1_000_000_000)
    }

    var isEnabled: Bool { lifetime > .zero }

    func user(id: Int64, claimedName: String?) -> User? {
        guard isEnabled else { return nil }
        let now = NIODeadline.now()
        return entries.withLockedValue { entries in
            guard let entry = entries[id], entry.expires > now, entry.claimedName == claimedName else { return nil }
            return entry.user
        }
    }

    func remember(_ user: User, claimedName: String?) {
        guard isEnabled else { return }
        let now = NIODeadline.now()
        entries.withLockedValue { entries in
            if entries.count >= Self.maxEntries {
                entries = entries.filter { $0.value.expires > now }
                if entries.count >= Self.maxEntries { entries = [:] }
            }
            entries[user.id] = Entry(user: user, claimedName: claimedName, expires: now + lifetime)
        }
    }
}
