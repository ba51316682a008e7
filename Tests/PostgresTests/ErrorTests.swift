import Postgres
import Testing

@Suite struct ErrorTests {
    @Test func sqlStateDetailAndConstraintAreCarried() async throws {
        try await withClient { db in
            let parent = TestDatabase.uniqueName("parent")
            let child = TestDatabase.uniqueName("child")
            try await db.execute("CREATE TABLE \(unescaped: parent) (id int PRIMARY KEY, name text UNIQUE)")
            try await db.execute(
                "CREATE TABLE \(unescaped: child) (id int PRIMARY KEY, parent_id int REFERENCES \(unescaped: parent))")
            try await db.execute("INSERT INTO \(unescaped: parent) VALUES (1, 'secret-value')")

            let unique = await #expect(throws: PostgresError.self) {
                try await db.execute("INSERT INTO \(unescaped: parent) VALUES (2, \("secret-value"))")
            }
            #expect(unique?.isUniqueViolation == true)
            #expect(unique?.sqlState == SQLState.uniqueViolation)
            #expect(unique?.constraint == "\(parent)_name_key")
            #expect(unique?.detail?.contains("secret-value") == true)
            // What may reach a client says nothing about the schema or the values.
            #expect(unique?.description == "database error")
            #expect(unique?.debugDescription.contains("23505") == true)

            let foreignKey = await #expect(throws: PostgresError.self) {
                try await db.execute("INSERT INTO \(unescaped: child) VALUES (1, \(99))")
            }
            #expect(foreignKey?.isForeignKeyViolation == true)

            let syntax = await #expect(throws: PostgresError.self) { try await db.execute("SELEC 1") }
            #expect(syntax?.sqlState == SQLState.syntaxError)
            #expect(syntax?.kind == .server)
            #expect(syntax?.isUnavailable == false)

            try await db.execute("DROP TABLE \(unescaped: child), \(unescaped: parent)")
        }
    }

    @Test func connectionFailureIsUnavailable() async throws {
        let client = PostgresClient(
            configuration: PostgresConfiguration(url: "postgresql://nobody@127.0.0.1:1/none", connectTimeoutSeconds: 2))
        let error = await #expect(throws: PostgresError.self) { try await client.execute("SELECT 1") }
        #expect(error?.kind == .connectionFailed)
        #expect(error?.isUnavailable == true)
        #expect(error?.description == "database connection error")
        #expect(client.statistics.open == 0)
        await client.shutdown()
    }
}
