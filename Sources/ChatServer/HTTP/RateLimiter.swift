import NIOConcurrencyHelpers
import NIOCore

/// How often something may happen: `burst` at once, refilled at `perSecond`. A limit with
/// `perSecond` 0 is off.
struct RateLimit: Sendable, Equatable {
    var burst: Double
    var perSecond: Double

    static let off = RateLimit(burst: 0, perSecond: 0)

    var isOff: Bool { perSecond <= 0 }

    /// `count` per minute, all of them at once if need be.
    static func perMinute(_ count: Int) -> RateLimit {
        RateLimit(burst: Double(count), perSecond: Double(count) / 60)
    }

    /// `count` per second, with bursts of `burst` (at least `count`).
    static func perSecond(_ count: Int, burst: Int) -> RateLimit {
        RateLimit(burst: Double(max(count, burst)), perSecond: Double(count))
    }
}

/// A token bucket. Time is passed in (seconds on a monotonic clock), so the arithmetic is
/// tested without waiting.
struct TokenBucket: Sendable, Equatable {
    private(set) var tokens: Double
    private(set) var updatedAt: Double

    init(_ limit: RateLimit, now: Double) {
        tokens = limit.burst
        updatedAt = now
    }

    private mutating func refill(_ limit: RateLimit, now: Double) {
        if now > updatedAt { tokens = min(limit.burst, tokens + (now - updatedAt) * limit.perSecond) }
        updatedAt = max(updatedAt, now)
    }

    /// Seconds until a token is available (0: one is available now). Takes nothing.
    mutating func wait(_ limit: RateLimit, now: Double) -> Double {
        guard !limit.isOff else { return 0 }
        refill(limit, now: now)
        return tokens >= 1 ? 0 : (1 - tokens) / limit.perSecond
    }

    /// Takes a token if there is one; returns the seconds until there would be one otherwise.
    mutating func take(_ limit: RateLimit, now: Double) -> Double {
        let wait = wait(limit, now: now)
        if wait == 0, !limit.isOff { tokens -= 1 }
        return wait
    }

    /// Whether the bucket is full again (it can be forgotten).
    mutating func isFull(_ limit: RateLimit, now: Double) -> Bool {
        refill(limit, now: now)
        return tokens >= limit.burst
    }

    static var now: Double { Double(NIODeadline.now().uptimeNanoseconds) / 1_000_000_000 }
}

/// Token buckets by key (a client address, a user, a user name), in this instance's memory:
/// with N instances behind a load balancer a client gets up to N times the limit. Buckets
/// that filled up again are forgotten once there are more than `maxKeys`.
final class RateLimiter<Key: Hashable & Sendable>: Sendable {
    let limit: RateLimit
    private let maxKeys: Int
    private let buckets = NIOLockedValueBox<[Key: TokenBucket]>([:])

    init(_ limit: RateLimit, maxKeys: Int = 100_000) {
        self.limit = limit
        self.maxKeys = maxKeys
    }

    /// Takes one from the key's bucket: nil when allowed, else how long to wait.
    func take(_ key: Key, now: Double = TokenBucket.now) -> Duration? {
        update(key, now: now) { $0.take(limit, now: now) }
    }

    /// Whether the key may go on now (nil) or must wait, without taking anything.
    func check(_ key: Key, now: Double = TokenBucket.now) -> Duration? {
        update(key, now: now) { $0.wait(limit, now: now) }
    }

    private func update(_ key: Key, now: Double, _ body: (inout TokenBucket) -> Double) -> Duration? {
        guard !limit.isOff else { return nil }
        let wait: Double = buckets.withLockedValue { buckets in
            if buckets.count >= maxKeys, buckets[key] == nil {
                for (other, var bucket) in buckets where bucket.isFull(limit, now: now) { buckets[other] = nil }
                // Still full of active keys: start over rather than grow without bound.
                if buckets.count >= maxKeys { buckets = [:] }
            }
            var bucket = buckets[key] ?? TokenBucket(limit, now: now)
            let wait = body(&bucket)
            buckets[key] = bucket
            return wait
        }
        return wait > 0 ? .milliseconds(Int64((wait * 1000).rounded(.up))) : nil
    }
}

/// The rate limits of the HTTP API (README, "Limits"); WebSocket frames are limited per
/// socket by `SocketInput`.
struct RateLimits: Sendable {
    /// Failed logins per user name, and per client address.
    let loginFailuresByName: RateLimiter<String>
    let loginFailuresByAddress: RateLimiter<String>
    /// Registrations per client address.
    let registrationsByAddress: RateLimiter<String>
    /// Messages sent per user (REST and WebSocket together).
    let sendsByUser: RateLimiter<Int64>

    init(_ settings: AppConfiguration.RateLimitSettings) {
        loginFailuresByName = RateLimiter(.perMinute(settings.loginFailuresPerMinute))
        loginFailuresByAddress = RateLimiter(.perMinute(settings.loginFailuresPerAddressPerMinute))
        registrationsByAddress = RateLimiter(.perMinute(settings.registrationsPerAddressPerMinute))
        sendsByUser = RateLimiter(.perSecond(settings.sendsPerSecond, burst: settings.effectiveSendBurst))
    }
}

extension Duration {
    /// Whole seconds, rounded up (a `Retry-After` value).
    var wholeSecondsRoundedUp: Int64 {
        let (seconds, attoseconds) = components
        return seconds + (attoseconds > 0 ? 1 : 0)
    }
}
