import Testing

import NIOCore

@testable import ChatServer

/// Token-bucket arithmetic, with time passed in.
@Suite struct RateLimiterTests {
    @Test func aBucketAllowsItsBurstThenRefillsAtItsRate() {
        let limit = RateLimit.perSecond(2, burst: 4)
        var bucket = TokenBucket(limit, now: 100)
        for _ in 0..<4 { #expect(bucket.take(limit, now: 100) == 0) }
        #expect(bucket.take(limit, now: 100) == 0.5)  // one token every half second
        #expect(bucket.take(limit, now: 100.25) == 0.25)
        #expect(bucket.take(limit, now: 100.5) == 0)
        #expect(bucket.take(limit, now: 100.5) > 0)
        // Never more than the burst, however long it rested.
        for _ in 0..<4 { #expect(bucket.take(limit, now: 1_000) == 0) }
        #expect(bucket.take(limit, now: 1_000) > 0)
    }

    @Test func checkingTakesNothingAndAnOffLimitNeverWaits() {
        let limiter = RateLimiter<String>(.perMinute(2))
        #expect(limiter.check("a", now: 0) == nil)
        #expect(limiter.take("a", now: 0) == nil)
        #expect(limiter.take("a", now: 0) == nil)
        #expect(limiter.check("a", now: 0) == .seconds(30))
        #expect(limiter.take("b", now: 0) == nil)  // keys are separate
        #expect(limiter.take("a", now: 30) == nil)
        let off = RateLimiter<String>(.off)
        for _ in 0..<1_000 { #expect(off.take("a", now: 0) == nil) }
    }

    @Test func idleKeysAreForgottenPastTheKeyLimit() {
        let limiter = RateLimiter<Int>(.perSecond(1, burst: 1), maxKeys: 10)
        for key in 0..<10 { #expect(limiter.take(key, now: 0) == nil) }
        // Key 0 is still limited at 0.5 s; by 2 s every bucket is full again and may go.
        #expect(limiter.take(0, now: 0.5) != nil)
        #expect(limiter.take(10, now: 2) == nil)
        #expect(limiter.take(0, now: 2) == nil)
    }

    @Test func retryAfterIsWholeSecondsRoundedUp() {
        #expect(Duration.milliseconds(1).wholeSecondsRoundedUp == 1)
        #expect(Duration.seconds(2).wholeSecondsRoundedUp == 2)
        #expect(Duration.milliseconds(2_001).wholeSecondsRoundedUp == 3)
    }
}

/// Who may read `/metrics` without a token: this host only.
@Suite struct MetricsAccessTests {
    @Test func withoutATokenOnlyLoopbackPeers() throws {
        let allowed = ["127.0.0.1", "127.8.9.10", "::1"]
        let refused = ["10.0.0.1", "192.168.1.20", "8.8.8.8", "::ffff:10.0.0.1", "2001:db8::1"]
        for address in allowed {
            let peer = try SocketAddress(ipAddress: address, port: 1234)
            #expect(OperationsController.mayReadMetrics(token: nil, expected: nil, peer: peer), "\(address)")
        }
        for address in refused {
            let peer = try SocketAddress(ipAddress: address, port: 1234)
            #expect(!OperationsController.mayReadMetrics(token: nil, expected: nil, peer: peer), "\(address)")
        }
        let local = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
        #expect(!OperationsController.mayReadMetrics(token: nil, expected: "t", peer: local))
        #expect(OperationsController.mayReadMetrics(token: "t", expected: "t", peer: try SocketAddress(ipAddress: "8.8.8.8", port: 1)))
    }
}
