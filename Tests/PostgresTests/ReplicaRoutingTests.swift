import Foundation
import Postgres
import Testing

/// The pure parts of replica routing: WAL positions, the primary's sampled history, and the
/// routing decision of `PostgresReplicas` over replicas in known states.
@Suite struct ReplicaRoutingTests {
    @Test func walPositionsParseCompareAndPrint() throws {
        let small = try #require(WALPosition("0/16B3748"))
        let large = try #require(WALPosition("16/B374D848"))
        #expect(small.value == 0x16B_3748)
        #expect(large.value == 0x16 << 32 | 0xB374_D848)
        #expect(small < large)
        #expect(large.description == "16/B374D848")
        #expect(WALPosition("16B374D848") == nil)
        #expect(WALPosition("x/1") == nil)
        #expect(WALPosition("") == nil)
    }

    @Test func aWriteIsCoveredByTheFirstSampleTakenAfterIt() {
        let start = ContinuousClock.now
        var history = PrimaryWALHistory(keep: .seconds(10))
        #expect(history.position(coveringWritesBefore: start) == nil, "no sample yet: only the primary is sure")
        history.record(WALPosition(100), at: start + .milliseconds(100))
        history.record(WALPosition(200), at: start + .milliseconds(200))
        #expect(history.position(coveringWritesBefore: start + .milliseconds(50)) == WALPosition(100))
        #expect(history.position(coveringWritesBefore: start + .milliseconds(150)) == WALPosition(200))
        #expect(history.position(coveringWritesBefore: start + .milliseconds(250)) == nil)
    }

    @Test func lagIsTheAgeOfTheOldestSampleNotReplayed() {
        let start = ContinuousClock.now
        var history = PrimaryWALHistory(keep: .seconds(10))
        for step in 1...5 { history.record(WALPosition(UInt64(step * 100)), at: start + .seconds(step)) }
        let now = start + .seconds(6)
        #expect(history.lag(ofReplayed: WALPosition(500), at: now) == .zero)
        #expect(history.lag(ofReplayed: WALPosition(650), at: now) == .zero)
        #expect(history.lag(ofReplayed: WALPosition(300), at: now) == .seconds(2), "missing the sample of second 4")
        #expect(history.lag(ofReplayed: WALPosition(250), at: now) == .seconds(3))
        #expect(history.lag(ofReplayed: WALPosition(50), at: now) == nil, "behind everything, sampling young: unknown")
    }

    @Test func behindEverySampleOfAFullHistoryIsAtLeastItsAge() {
        let start = ContinuousClock.now
        var history = PrimaryWALHistory(keep: .seconds(3))
        for step in 0...10 { history.record(WALPosition(UInt64(step * 100)), at: start + .seconds(step)) }
        // Samples of seconds 7...10 are kept; a replica at 50 has none of them.
        #expect(history.lag(ofReplayed: WALPosition(50), at: start + .seconds(11)) == .seconds(4))
    }

    @Test func samplesOlderThanTheWindowAreDropped() {
        let start = ContinuousClock.now
        var history = PrimaryWALHistory(keep: .seconds(2))
        for step in 0...10 { history.record(WALPosition(UInt64(step)), at: start + .seconds(step)) }
        #expect(history.samples.map(\.position.value) == [8, 9, 10])
    }

    @Test func anIdlePrimaryMeansNoLag() {
        let start = ContinuousClock.now
        var history = PrimaryWALHistory(keep: .seconds(10))
        for step in 0...5 { history.record(WALPosition(700), at: start + .seconds(step)) }
        #expect(history.lag(ofReplayed: WALPosition(700), at: start + .seconds(6)) == .zero)
    }

    @Test func theReadYourWritesWindowOutlastsTheLagBound() {
        let settings = PostgresReplicas.Settings(maxLag: .milliseconds(500), checkInterval: .milliseconds(100))
        #expect(settings.readYourWritesWindow == .milliseconds(1700))
    }
}
