import ChatTestKit
import Foundation
import Postgres
import Testing

/// `chat-server` as an operator runs it: from any directory, configured by a `.env` file.
@Suite struct CommandLineTests {
    struct Run {
        var status: Int32
        var output: String
    }

    /// Runs the binary in `directory` with only `environment` (plus PATH).
    func run(_ arguments: [String], in directory: URL, environment: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = try ServerProcess.executableURL()
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = environment.merging(["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"]) { a, _ in a }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    func scratchDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chat-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// The migrations are in the binary: `migrate` works from a directory without sql/,
    /// needs no JWT secret, reads DATABASE_URL from ./.env, and `--status` lists each version.
    @Test func migrateRunsFromAnyDirectoryWithItsEmbeddedMigrations() async throws {
        let admin = PostgresClient(configuration: PostgresConfiguration(url: try Cluster.databaseURL, applicationName: "cli-tests"))
        let name = "chat_cli_\(UInt32.random(in: 0...UInt32.max))"
        try await admin.execute(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        do {
            let base = try Cluster.databaseURL
            let url = String(base[..<base.lastIndex(of: "/")!]) + "/\(name)"
            let directory = try scratchDirectory()
            try Data("# written by the test\nDATABASE_URL=\(url)\nLOG_LEVEL=warning\n".utf8)
                .write(to: directory.appendingPathComponent(".env"))

            let before = try run(["migrate", "--status"], in: directory)
            #expect(before.status == 0, "\(before.output)")
            #expect(before.output.contains("pending  0001_init.sql"), "\(before.output)")
            #expect(!before.output.contains("applied"), "\(before.output)")

            let migrate = try run(["migrate"], in: directory)
            #expect(migrate.status == 0, "\(migrate.output)")
            #expect(migrate.output.contains("Applied migrations: 0001"), "\(migrate.output)")

            let after = try run(["migrate", "--status"], in: directory)
            #expect(after.status == 0)
            #expect(after.output.contains("applied  0001_init.sql"), "\(after.output)")
            #expect(!after.output.contains("pending"), "\(after.output)")
            #expect(try run(["migrate"], in: directory).output.contains("up to date"))
        } catch {
            _ = try? await admin.execute(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
            await admin.shutdown()
            throw error
        }
        try await admin.execute(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
        await admin.shutdown()
    }

    /// A wrong DATABASE_URL ends startup with what failed (host, port, database, libpq's
    /// reason), never the password.
    @Test func aWrongDatabaseURLSaysWhatFailed() throws {
        let directory = try scratchDirectory()
        let base = try Cluster.databaseURL
        let server = String(base[..<base.lastIndex(of: "/")!]).replacingOccurrences(of: "postgresql://postgres@", with: "postgresql://postgres:hunter2secret@")
        let environment = ["JWT_SECRET": Cluster.secret, "PORT": "0", "UPLOAD_DIR": directory.path]
        let noDatabase = try run(["serve"], in: directory, environment: environment.merging(["DATABASE_URL": server + "/no_such_db_here"]) { a, _ in a })
        #expect(noDatabase.status != 0)
        #expect(noDatabase.output.contains("cannot connect to PostgreSQL"), "\(noDatabase.output)")
        #expect(noDatabase.output.contains("database no_such_db_here"), "\(noDatabase.output)")
        #expect(noDatabase.output.contains("does not exist"), "\(noDatabase.output)")
        #expect(!noDatabase.output.contains("hunter2secret"), "\(noDatabase.output)")

        let refused = try run(["migrate"], in: directory, environment: ["DATABASE_URL": "postgresql://u:hunter2secret@127.0.0.1:1/db"])
        #expect(refused.status != 0)
        #expect(refused.output.contains("host 127.0.0.1, port 1, database db"), "\(refused.output)")
        #expect(refused.output.contains("refused"), "\(refused.output)")
        #expect(!refused.output.contains("hunter2secret"), "\(refused.output)")

        let mysql = try run(["migrate"], in: directory, environment: ["DATABASE_URL": "mysql://u:hunter2secret@db/chat"])
        #expect(mysql.status != 0)
        #expect(mysql.output.contains("must be a PostgreSQL URI"), "\(mysql.output)")
        #expect(!mysql.output.contains("hunter2secret"), "\(mysql.output)")
    }

    /// `--help` lists the environment variables.
    @Test func helpListsTheEnvironmentVariables() throws {
        let help = try run(["--help"], in: try scratchDirectory())
        #expect(help.status == 0)
        for key in ["DATABASE_URL", "JWT_SECRET", "SHUTDOWN_GRACE_SECONDS", "WS_PING_SECONDS"] {
            #expect(help.output.contains(key), "\(key) missing from --help")
        }
    }
}
