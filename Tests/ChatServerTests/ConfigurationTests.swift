import ChatCore
import Foundation
import Postgres
import Testing

@testable import ChatServer

@Suite struct ConfigurationTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The binary carries sql/ as it is: regenerate with `python3 scripts/embed-resources.py`.
    @Test func embeddedMigrationsAreTheFilesInSQL() throws {
        let files = try Migrator.loadMigrations(from: Self.repository.appendingPathComponent("sql"))
        #expect(!files.isEmpty)
        #expect(
            ChatSchema.embeddedMigrations == files,
            "sql/ and EmbeddedMigrations.generated.swift differ: run python3 scripts/embed-resources.py")
    }

    /// /openapi.json and /docs serve the files in Sources/ChatServer/OpenAPI as they are.
    @Test func embeddedOpenAPIResourcesAreTheFiles() throws {
        let directory = Self.repository.appendingPathComponent("Sources/ChatServer/OpenAPI")
        let hint = "run python3 scripts/embed-resources.py"
        #expect(OpenAPIResources.document == (try String(contentsOf: directory.appendingPathComponent("openapi.json"), encoding: .utf8)), "\(hint)")
        #expect(OpenAPIResources.docsPage == (try String(contentsOf: directory.appendingPathComponent("docs.html"), encoding: .utf8)), "\(hint)")
    }

    /// `.env.example` names every key the configuration reads, and no other.
    @Test func envExampleListsExactlyTheKeysRead() throws {
        let text = try String(contentsOf: Self.repository.appendingPathComponent(".env.example"), encoding: .utf8)
        let listed = Set(
            text.split(separator: "\n").compactMap { line -> String? in
                let body = line.hasPrefix("# ") ? line.dropFirst(2) : line[...]
                guard let equals = body.firstIndex(of: "="),
                    body[..<equals].allSatisfy({ $0 == "_" || $0.isUppercase || $0.isNumber }), equals != body.startIndex
                else { return nil }
                return String(body[..<equals])
            })
        let read = Set(AppConfiguration.environmentKeys)
        #expect(read.count > 40)
        #expect(listed.subtracting(read).isEmpty, "listed but never read: \(listed.subtracting(read).sorted())")
        #expect(read.subtracting(listed).isEmpty, "read but not in .env.example: \(read.subtracting(listed).sorted())")
    }

    @Test func migrationNeedsOnlyTheDatabase() throws {
        let settings = try AppConfiguration.MigrationSettings.fromEnvironment(["DATABASE_URL": "postgresql://u@h/db"])
        #expect(settings.databaseURL == "postgresql://u@h/db")
        #expect(settings.migrationsDirectory == nil)
        #expect(throws: AppConfiguration.Invalid.self) {
            try AppConfiguration.fromEnvironment(["DATABASE_URL": "postgresql://u@h/db"])  // serve needs the secret
        }
    }

    @Test func databaseURLsThatAreNotPostgreSQLAreRefusedClearly() {
        for url in ["mysql://root:secret@db/chat", "garbage string", "http://example.com"] {
            do {
                _ = try AppConfiguration.MigrationSettings.fromEnvironment(["DATABASE_URL": url])
                Issue.record("\(url) accepted")
            } catch let error as AppConfiguration.Invalid {
                #expect(error.description.contains("DATABASE_URL"))
                #expect(!error.description.contains("secret"))
            } catch {
                Issue.record("\(error)")
            }
        }
        #expect(PostgresConfiguration(url: "postgresql://chat:pw@db.example:6543/rooms").target
            == "host db.example, port 6543, database rooms, user chat")
    }

    @Test func dotEnvFilesFillInWhatTheEnvironmentLacks() throws {
        let pairs = try DotEnv.parse(
            """
            # a comment
            PORT=9000
            export LOG_LEVEL = debug
            JWT_SECRET="a secret # with a hash"
            PUBLIC_BASE_URL=https://chat.example # trailing comment
            EMPTY=

            """)
        #expect(pairs.map(\.0) == ["PORT", "LOG_LEVEL", "JWT_SECRET", "PUBLIC_BASE_URL", "EMPTY"])
        #expect(pairs.map(\.1) == ["9000", "debug", "a secret # with a hash", "https://chat.example", ""])
        for bad in ["no equals sign", "1KEY=x", "KEY=\"unterminated"] {
            #expect(throws: DotEnv.Invalid.self) { try DotEnv.parse(bad) }
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("chat-\(UUID().uuidString).env")
        try Data("PORT=9000\nHOST=127.0.0.1\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let merged = try DotEnv.merged(into: ["PORT": "8001"], file: file.path)
        #expect(merged == ["PORT": "8001", "HOST": "127.0.0.1"])
        #expect(try DotEnv.merged(into: ["A": "b"], file: "/nonexistent/.env") == ["A": "b"])
    }
}

@Suite struct ConfigurationDefaultsTests {
    /// Defaults live in one place (the settings' initial values): reading an environment
    /// without the optional keys gives exactly them; durations read as durations.
    @Test func anEmptyEnvironmentGivesTheDefaults() throws {
        let read = try AppConfiguration.fromEnvironment(["DATABASE_URL": "postgresql://u@h/db", "JWT_SECRET": String(repeating: "s", count: 32)])
        let defaults = AppConfiguration(databaseURL: "postgresql://u@h/db", jwtSecret: String(repeating: "s", count: 32))
        #expect(read.http.port == defaults.http.port && read.http.idleTimeout == defaults.http.idleTimeout)
        #expect(read.database.poolTimeout == defaults.database.poolTimeout && read.database.lockTimeout == .milliseconds(2000))
        #expect(read.auth.tokenLifetime == .seconds(86_400) && read.auth.userCacheLifetime == defaults.auth.userCacheLifetime)
        #expect(read.retention.interval == .seconds(3600) && read.retention.changeLogWindow == .seconds(7 * 86_400))
        #expect(read.realtime.pingInterval == defaults.realtime.pingInterval && read.realtime.notifyBatchWindow == .zero)
        #expect(read.rateLimits.effectiveSendBurst == 0)
        let custom = try AppConfiguration.fromEnvironment([
            "DATABASE_URL": "postgresql://u:pw@h/db", "JWT_SECRET": String(repeating: "s", count: 32),
            "RETENTION_INTERVAL_SECONDS": "0", "WS_PING_SECONDS": "7", "DB_LOCK_TIMEOUT_MS": "250", "RATE_LIMIT_SENDS_PER_SECOND": "5",
        ])
        #expect(custom.retention.interval == nil && custom.realtime.pingInterval == .seconds(7))
        #expect(custom.database.lockTimeout == .milliseconds(250) && custom.rateLimits.effectiveSendBurst == 10)
        // Secrets never print.
        #expect(!"\(custom.database.url) \(custom.auth.jwtSecret)".contains("pw") && !"\(custom)".contains("sssssss"))
    }
}
