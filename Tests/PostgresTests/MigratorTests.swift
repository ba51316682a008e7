import Foundation
import Logging
import Postgres
import Testing

@Suite struct MigratorTests {
    static let sqlDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("sql")

    @Test func loadsNumberedFilesInOrder() throws {
        let migrations = try Migrator.loadMigrations(from: Self.sqlDirectory)
        #expect(!migrations.isEmpty)
        #expect(migrations.first?.version == "0001")
        #expect(migrations.map(\.version) == migrations.map(\.version).sorted())
    }

    /// Three migrators race on an empty database: every file is applied exactly once.
    @Test func concurrentMigratorsApplyEachFileOnce() async throws {
        let name = TestDatabase.uniqueName("migrate")
        try await withClient(poolSize: 1) { admin in
            try await admin.withConnection { try await $0.simpleQuery("CREATE DATABASE \(name)") }
        }
        var components = try #require(URLComponents(string: try TestDatabase.url()))
        components.path = "/\(name)"
        let url = try #require(components.string)
        let migrations = try Migrator.loadMigrations(from: Self.sqlDirectory)
        let applied = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<3 {
                group.addTask {
                    let client = PostgresClient(configuration: PostgresConfiguration(url: url, poolSize: 1))
                    defer { Task { await client.shutdown() } }
                    return try await Migrator(client: client, logger: Logger(label: "test")).migrate(migrations)
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(applied.sorted() == migrations.map(\.version))
        let client = PostgresClient(configuration: PostgresConfiguration(url: url, poolSize: 1))
        let recorded = try await client.query("SELECT version FROM schema_migrations ORDER BY version").map {
            try $0.decode(String.self, column: 0)
        }
        #expect(recorded == migrations.map(\.version))
        await client.shutdown()
        try await withClient(poolSize: 1) { admin in
            try await admin.withConnection { try await $0.simpleQuery("DROP DATABASE \(name) WITH (FORCE)") }
        }
    }
}
