import ArgumentParser
import Foundation
import Logging
import Postgres

/// Runs one prepared statement through the `Postgres` pool from `concurrency` tasks for a
/// fixed time and prints the rate. `scripts/bench-postgres.sh` runs it beside `pgbench -M
/// prepared` on the same statements and reports the ratios.
@main
struct PostgresBench: AsyncParsableCommand {
    enum Statement: String, ExpressibleByArgument {
        case insert, select
    }

    @Option(help: "insert or select") var statement: Statement = .select
    @Option(help: "Concurrent tasks (and pool size, unless --pool-size is given)") var concurrency = 8
    @Option(help: "Pool size; defaults to the concurrency") var poolSize: Int?
    @Option(help: "Seconds to measure") var seconds = 5.0
    @Option(help: "Rows the select picks from") var rows = 10_000
    @Option(help: "nonBlocking or threadPool") var ioMode: String = "nonBlocking"
    @Flag(help: "Create and fill bench_items, then exit") var setup = false

    func run() async throws {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"] else {
            throw ValidationError("DATABASE_URL is required")
        }
        let db = PostgresClient(
            configuration: PostgresConfiguration(
                url: url, applicationName: "postgres-bench", poolSize: poolSize ?? concurrency,
                poolWaitTimeout: .seconds(60), ioMode: PostgresConfiguration.IOMode(rawValue: ioMode) ?? .nonBlocking))
        defer { Task { await db.shutdown() } }
        if setup {
            try await db.withConnection { connection in
                try await connection.simpleQuery(
                    """
                    DROP TABLE IF EXISTS bench_items;
                    CREATE TABLE bench_items (id bigserial PRIMARY KEY, payload text NOT NULL);
                    INSERT INTO bench_items (payload) SELECT 'payload-' || g FROM generate_series(1, \(rows)) g;
                    """)
                // VACUUM cannot run in the implicit transaction of a multi-statement query.
                try await connection.simpleQuery("VACUUM ANALYZE bench_items")
            }
            return
        }
        // Open every connection and prepare the statement before measuring.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<(poolSize ?? concurrency) {
                group.addTask { try await self.once(db) }
            }
            try await group.waitForAll()
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let start = ContinuousClock.now
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var count = 0
                    while ContinuousClock.now < deadline {
                        try await self.once(db)
                        count += 1
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(String(format: "%.1f", Double(total) / seconds))
    }

    func once(_ db: PostgresClient) async throws {
        switch statement {
        case .insert:
            try await db.execute("INSERT INTO bench_items (payload) VALUES (\("payload-text"))")
        case .select:
            let id = Int64.random(in: 1...Int64(rows))
            let row = try await db.queryRow("SELECT id, payload FROM bench_items WHERE id = \(id)")
            _ = try row.decode((Int64, String).self)
        }
    }
}
