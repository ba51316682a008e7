import Foundation
import Postgres
import Testing

@Suite struct PoolTests {
    @Test func transactionCommitsOrRollsBack() async throws {
        try await withClient { db in
            let table = TestDatabase.uniqueName("tx")
            try await db.execute("CREATE TABLE \(unescaped: table) (id int PRIMARY KEY)")
            struct Boom: Error {}
            await #expect(throws: Boom.self) {
                try await db.withTransaction { connection in
                    try await connection.execute("INSERT INTO \(unescaped: table) VALUES (1)")
                    throw Boom()
                }
            }
            try await db.withTransaction { connection in
                _ = try await connection.execute("INSERT INTO \(unescaped: table) VALUES (2)")
            }
            // A failed statement whose error the body swallows must not commit silently.
            await #expect(throws: PostgresError.self) {
                try await db.withTransaction { connection in
                    try await connection.execute("INSERT INTO \(unescaped: table) VALUES (3)")
                    _ = try? await connection.execute("INSERT INTO \(unescaped: table) VALUES (2)")
                }
            }
            let ids = try await db.query("SELECT id FROM \(unescaped: table) ORDER BY id").map {
                try $0.decode(Int.self, column: 0)
            }
            #expect(ids == [2])
            try await db.execute("DROP TABLE \(unescaped: table)")
        }
    }

    @Test func connectionReturnedInsideATransactionIsRolledBack() async throws {
        try await withClient(poolSize: 1) { db in
            let table = TestDatabase.uniqueName("leak")
            try await db.execute("CREATE TABLE \(unescaped: table) (id int)")
            try await db.withConnection { connection in
                try await connection.simpleQuery("BEGIN")
                try await connection.execute("INSERT INTO \(unescaped: table) VALUES (1)")
            }
            try await db.withConnection { connection in
                #expect(connection.transactionState == .idle)
            }
            #expect(try await db.queryRow("SELECT count(*) FROM \(unescaped: table)").decode(Int.self, column: 0) == 0)
            try await db.execute("DROP TABLE \(unescaped: table)")
        }
    }

    @Test func hundredConcurrentTasksShareAPoolOfFour() async throws {
        try await withClient(poolSize: 4, waitTimeout: .seconds(30)) { db in
            let sums = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<100 {
                    group.addTask {
                        try await db.withConnection { connection in
                            try await connection.queryRow("SELECT \(i) + 1, pg_sleep(0.005)").decode(Int.self, column: 0)
                        }
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(sums.sorted() == Array(1...100))
            let stats = db.statistics
            #expect(stats.open <= 4)
            #expect(stats.waiting == 0)
        }
    }

    @Test func recoversAfterBackendIsTerminated() async throws {
        try await withClient(poolSize: 1) { db in
            let before = try await db.queryRow("SELECT pg_backend_pid()").decode(Int32.self, column: 0)
            let terminated = try await withClient(poolSize: 1) { admin in
                // pg_terminate_backend(pid, timeout) waits until the backend is gone.
                try await admin.queryRow("SELECT pg_terminate_backend(\(before), 5000)").decode(Bool.self, column: 0)
            }
            #expect(terminated)
            // The pool notices the dead idle connection before leasing it and opens another,
            // so the caller sees no error.
            let after = try await db.queryRow("SELECT pg_backend_pid()").decode(Int32.self, column: 0)
            #expect(after != before)
            #expect(try await db.queryRow("SELECT 40 + 2").decode(Int.self, column: 0) == 42)
        }
    }

    @Test func brokenConnectionDuringAStatementIsReplaced() async throws {
        try await withClient(poolSize: 1) { db in
            let pid = try await db.queryRow("SELECT pg_backend_pid()").decode(Int32.self, column: 0)
            // The backend dies while the statement runs: the caller gets an error, the pool a new connection.
            let error = await #expect(throws: PostgresError.self) {
                try await db.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            }
            #expect(error?.isUnavailable == true)
            let next = try await db.queryRow("SELECT pg_backend_pid()").decode(Int32.self, column: 0)
            #expect(next != pid)
            #expect(db.statistics.open == 1)
        }
    }

    @Test func waitingForAConnectionTimesOut() async throws {
        try await withClient(poolSize: 1, waitTimeout: .milliseconds(200)) { db in
            // The holder keeps the pool's one connection until told to let go: no race with time.
            let (held, heldSignal) = AsyncStream<Void>.makeStream()
            let (release, releaseSignal) = AsyncStream<Void>.makeStream()
            let holding = Task {
                try await db.withConnection { _ in
                    heldSignal.yield()
                    for await _ in release { break }
                }
            }
            for await _ in held { break }
            // A pool timeout (not a result) proves the wait ended before the connection was free.
            let error = await #expect(throws: PostgresError.self) { try await db.execute("SELECT 1") }
            #expect(error?.kind == .poolTimeout)
            #expect(error?.isUnavailable == true)
            releaseSignal.yield()
            releaseSignal.finish()
            try await holding.value
            #expect(try await db.queryRow("SELECT 1").decode(Int.self, column: 0) == 1)
        }
    }

    @Test func unnamedStatementsAreNotCached() async throws {
        try await withClient(poolSize: 1) { db in
            try await db.withConnection { connection in
                for i in 0..<3 {
                    let value = try await connection.queryRow("SELECT \(i)::int * 7", preparation: .unnamed)
                    #expect(try value.decode(Int.self, column: 0) == i * 7)
                }
                let cached = try await connection.queryRow(
                    "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int * 7'"
                ).decode(Int.self, column: 0)
                #expect(cached == 0)
                await #expect(throws: PostgresError.self) {
                    try await connection.query("SELECT \("x")::int", preparation: .unnamed)
                }
            }
        }
    }

    @Test func preparedStatementsAreReusedAndSurviveDiscard() async throws {
        try await withClient(poolSize: 1) { db in
            for i in 0..<3 {
                #expect(try await db.queryRow("SELECT \(i)::int + 1").decode(Int.self, column: 0) == i + 1)
            }
            let prepared = try await db.queryRow(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 1'"
            ).decode(Int.self, column: 0)
            #expect(prepared == 1)
            _ = try await db.withConnection { try await $0.simpleQuery("DEALLOCATE ALL") }
            #expect(try await db.queryRow("SELECT \(5)::int + 1").decode(Int.self, column: 0) == 6)
        }
    }
}
