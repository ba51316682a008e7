import Foundation
import Postgres
import Testing

@Suite struct RoundTripTests {
    @Test func everySupportedTypeRoundTrips() async throws {
        try await withClient { db in
            let date = Date(timeIntervalSince1970: 1_756_811_000.654321)
            let row = try await db.queryRow(
                """
                SELECT \(42)::bigint, \(Int64.max), \(Int32.min), \(true), \(false), \(3.25), \("text"), \(date),
                    \([Int64(1), -2, Int64.max]), \([Int64]()), \(Int16(7))
                """)
            let (int, int64, int32, yes, no, double, text, decodedDate, array, empty, int16) = try row.decode(
                (Int, Int64, Int32, Bool, Bool, Double, String, Date, [Int64], [Int64], Int16).self)
            #expect(int == 42)
            #expect(int64 == Int64.max)
            #expect(int32 == Int32.min)
            #expect(yes && !no)
            #expect(double == 3.25)
            #expect(text == "text")
            #expect(abs(decodedDate.timeIntervalSince(date)) < 0.000_001)
            #expect(array == [1, -2, Int64.max])
            #expect(empty == [])
            #expect(int16 == 7)
        }
    }

    @Test func nullsDecodeAsNilForEveryOptionalType() async throws {
        try await withClient { db in
            let row = try await db.queryRow(
                """
                SELECT \(Int?.none), \(Int64?.none), \(Int32?.none), \(Bool?.none), \(Double?.none),
                    \(String?.none), \(Date?.none), \([Int64]?.none)
                """)
            let values = try row.decode((Int?, Int64?, Int32?, Bool?, Double?, String?, Date?, [Int64]?).self)
            #expect(values.0 == nil && values.1 == nil && values.2 == nil && values.3 == nil)
            #expect(values.4 == nil && values.5 == nil && values.6 == nil && values.7 == nil)
            #expect(row.isNull(0))
        }
    }

    @Test func textArraysBindAnyText() async throws {
        try await withClient { db in
            let values = [
                "plain", "with,comma", "{braces}", "\"quoted\"", "back\\slash", "NULL", "", "한국어 😊", "e\u{301}\"\\", "\\\"",
                " spaced ", "tab\tnew\nline",
            ]
            let rows = try await db.query("SELECT unnest(\(values)) AS v")
            #expect(try rows.map { try $0.decode(String.self, "v") } == values)
            let empty: [String] = []
            #expect(try await db.queryRow("SELECT cardinality(\(empty))").decode(Int.self, column: 0) == 0)
        }
    }

    @Test func specialDoubles() async throws {
        try await withClient { db in
            let row = try await db.queryRow("SELECT \(Double.infinity), \(-Double.infinity), \(Double.nan), \(0.1)")
            let (inf, negInf, nan, tenth) = try row.decode((Double, Double, Double, Double).self)
            #expect(inf == .infinity && negInf == -.infinity && nan.isNaN && tenth == 0.1)
        }
    }

    @Test func unicodeAndLargeTextRoundTrip() async throws {
        try await withClient { db in
            let samples = [
                "안녕하세요! 반갑습니다 😊", "👨‍👩‍👧‍👦🏳️‍🌈", "", " ", "\u{FEFF}bom", "line\nbreak\ttab",
                String(repeating: "가나다라😊", count: 200_000),  // ~ 2.6 MB of UTF-8
            ]
            for sample in samples {
                let back = try await db.queryRow("SELECT \(sample)::text").decode(String.self, column: 0)
                #expect(back == sample)
            }
        }
    }

    @Test func hostileStringsAreBoundNotSpliced() async throws {
        try await withClient { db in
            let table = TestDatabase.uniqueName("hostile")
            try await db.execute("CREATE TABLE \(unescaped: table) (id serial PRIMARY KEY, value text NOT NULL)")
            let hostile = [
                "'; DROP TABLE \(table); --", "\" OR 1=1 --", "\\", "\\'", "$1", "$$ $tag$", "%s %d", "'' ''",
                "\u{1}\u{7f}binaryish\u{fffd}", "Robert'); DROP TABLE students;--",
            ]
            for value in hostile {
                try await db.execute("INSERT INTO \(unescaped: table) (value) VALUES (\(value))")
            }
            let rows = try await db.query("SELECT value FROM \(unescaped: table) ORDER BY id")
            #expect(try rows.map { try $0.decode(String.self, column: 0) } == hostile)
            try await db.execute("DROP TABLE \(unescaped: table)")
        }
    }

    @Test func jsonRoundTrips() async throws {
        struct Payload: Codable, Sendable, Equatable {
            var name: String
            var tags: [String]
        }
        try await withClient { db in
            let payload = Payload(name: "김철수", tags: ["a", "\"quoted\""])
            let row = try await db.queryRow("SELECT \(PostgresJSON(payload)), \(PostgresJSON(payload))->>'name'")
            #expect(try row.decode(PostgresJSON<Payload>.self, column: 0).value == payload)
            #expect(try row.decode(String.self, column: 1) == "김철수")
        }
    }

    @Test func decodingErrorsNameTheColumnAndType() async throws {
        try await withClient { db in
            let row = try await db.queryRow("SELECT 'abc'::text AS word, NULL::int AS nothing")
            let wrongType = #expect(throws: PostgresError.self) { try row.decode(Int.self, "word") }
            #expect(wrongType?.kind == .decoding)
            #expect(wrongType?.message.contains("word") == true)
            #expect(wrongType?.message.contains("Int") == true)
            let null = #expect(throws: PostgresError.self) { try row.decode(Int.self, "nothing") }
            #expect(null?.message.contains("nothing") == true)
            #expect(null?.message.contains("NULL") == true)
            let missing = #expect(throws: PostgresError.self) { try row.decode(Int.self, "absent") }
            #expect(missing?.message.contains("absent") == true)
        }
    }

    @Test func rowCountHelpers() async throws {
        try await withClient { db in
            let one = try await db.queryRow("SELECT 1")
            #expect(try one.decode(Int.self, column: 0) == 1)
            #expect(try await db.queryOptionalRow("SELECT 1 WHERE false") == nil)
            await #expect(throws: PostgresError.self) { try await db.queryRow("SELECT 1 WHERE false") }
            await #expect(throws: PostgresError.self) { try await db.queryRow("SELECT generate_series(1, 2)") }
            await #expect(throws: PostgresError.self) {
                try await db.queryOptionalRow("SELECT generate_series(1, 2)")
            }
            #expect(try await db.execute("SELECT generate_series(1, 3)") == 3)
        }
    }
}
