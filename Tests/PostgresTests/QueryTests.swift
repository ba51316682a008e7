import Foundation
import Postgres
import Testing

@Suite struct QueryBuildingTests {
    @Test func interpolationBindsValuesAsPlaceholders() {
        let id: Int64 = 42
        let name = "x'; DROP TABLE users; --"
        let missing: String? = nil
        let query: PostgresQuery = "SELECT * FROM t WHERE id = \(id) AND name = \(name) AND note = \(missing)"
        #expect(query.sql == "SELECT * FROM t WHERE id = $1 AND name = $2 AND note = $3")
        #expect(query.binds.values == ["42", name, nil])
        #expect(query.binds.types == [PostgresType.int8.oid, PostgresType.text.oid, PostgresType.text.oid])
    }

    @Test func unescapedIsTheOnlyWayToSpliceText() {
        let column = "created_at"
        let query: PostgresQuery = "SELECT \(unescaped: column) FROM t LIMIT \(5)"
        #expect(query.sql == "SELECT created_at FROM t LIMIT $1")
        #expect(query.binds.count == 1)
    }

    @Test func fragmentsAreRenumbered() {
        let fragment: PostgresQuery = "a = \(1) AND b = '$1' AND \"$2\" = \(2)"
        let query: PostgresQuery = "SELECT \(0) WHERE \(fragment) AND c = \(3)"
        #expect(query.sql == "SELECT $1 WHERE a = $2 AND b = '$1' AND \"$2\" = $3 AND c = $4")
        #expect(query.binds.values == ["0", "1", "2", "3"])
        let commented: PostgresQuery = "-- don't\nx = \(1) /* it's $1 */ AND y = \(2)"
        let outer: PostgresQuery = "SELECT \(0) WHERE \(commented)"
        #expect(outer.sql == "SELECT $1 WHERE -- don't\nx = $2 /* it's $1 */ AND y = $3")
    }

    @Test func timestampsRoundTripThroughPostgresText() throws {
        let samples: [Date] = [
            Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 1_756_811_000.123456),
            Date(timeIntervalSince1970: -86_400 * 365.25 * 30 + 0.5), Date(timeIntervalSince1970: 4_102_444_800),
        ]
        for date in samples {
            let text = PostgresTimestamp.format(date)
            let parsed = try #require(PostgresTimestamp.parse(text))
            #expect(abs(parsed.timeIntervalSince1970 - date.timeIntervalSince1970) < 0.000_001, "\(text)")
        }
        #expect(PostgresTimestamp.format(Date(timeIntervalSince1970: 1_756_811_000.5)) == "2025-09-02 11:03:20.500000+00")
    }

    @Test func timestampParsingHandlesOffsetsAndRejectsGarbage() throws {
        let utc = try #require(PostgresTimestamp.parse("2025-09-02 11:03:17+00"))
        #expect(PostgresTimestamp.parse("2025-09-02 20:03:17+09") == utc)
        #expect(PostgresTimestamp.parse("2025-09-02 05:33:17-05:30") == utc)
        #expect(PostgresTimestamp.parse("2025-09-02 11:03:17.25+00")!.timeIntervalSince(utc) == 0.25)
        for bad in ["", "infinity", "2025-13-02 11:03:17+00", "2025-09-02", "2025-09-02 11:03:17+0x"] {
            #expect(PostgresTimestamp.parse(bad) == nil, "\(bad)")
        }
    }
}
