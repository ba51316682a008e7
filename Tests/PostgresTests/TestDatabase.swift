import Foundation
import Logging
import Postgres
import Testing

/// The database the tests run against: `DATABASE_URL`, set by `scripts/test.sh`.
/// Without it the tests fail with a clear message; they never skip silently.
enum TestDatabase {
    struct NotConfigured: Error, CustomStringConvertible {
        var description: String {
            "DATABASE_URL is not set: run the suite with scripts/test.sh, which starts a PostgreSQL for it"
        }
    }

    static func url() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
            throw NotConfigured()
        }
        return url
    }

    /// `POSTGRES_IO_MODE=threadPool` runs the suite against the thread-pool design
    /// (scripts/test.sh runs it in both modes).
    static var ioMode: PostgresConfiguration.IOMode {
        ProcessInfo.processInfo.environment["POSTGRES_IO_MODE"].flatMap(PostgresConfiguration.IOMode.init) ?? .nonBlocking
    }

    static func client(poolSize: Int = 4, waitTimeout: Duration = .seconds(5)) throws -> PostgresClient {
        PostgresClient(
            configuration: PostgresConfiguration(
                url: try url(), applicationName: "postgres-tests", poolSize: poolSize, poolWaitTimeout: waitTimeout,
                ioMode: ioMode),
            logger: Logger(label: "postgres-tests"))
    }

    /// A table name no other test uses.
    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)_\(UInt32.random(in: 0...UInt32.max))_\(UInt32.random(in: 0...UInt32.max))"
    }
}

/// Runs `body` with a fresh client and shuts the client down afterwards.
@discardableResult
func withClient<R>(
    poolSize: Int = 4, waitTimeout: Duration = .seconds(5), _ body: (PostgresClient) async throws -> R
) async throws -> R {
    let client = try TestDatabase.client(poolSize: poolSize, waitTimeout: waitTimeout)
    do {
        let result = try await body(client)
        await client.shutdown()
        return result
    } catch {
        await client.shutdown()
        throw error
    }
}
