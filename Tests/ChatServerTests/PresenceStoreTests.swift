import ChatCore
import Foundation
import Postgres
import Testing

/// `PresenceStore` against the test database: which instances count as live.
@Suite struct PresenceStoreTests {
    /// Each instance is judged by the expiry it wrote with its heartbeat, not by the reaper's
    /// own: an instance configured with a short expiry does not reap a healthy one that beats
    /// less often (before `sql/0013`, it did).
    @Test func anInstanceIsReapedByItsOwnExpiryOnly() async throws {
        let url = try #require(ProcessInfo.processInfo.environment["DATABASE_URL"])
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: url, poolSize: 2))
        defer { Task { await postgres.shutdown() } }
        let db = ChatDatabase(primary: postgres)
        let tag = UUID().uuidString.prefix(8)
        let patient = PresenceStore(db: db, instanceID: "patient-\(tag)", expiry: .seconds(60))
        let hasty = PresenceStore(db: db, instanceID: "hasty-\(tag)", expiry: .seconds(2))
        let reaper = PresenceStore(db: db, instanceID: "reaper-\(tag)", expiry: .seconds(60))
        for store in [patient, hasty, reaper] { try await store.heartbeat() }
        // Both last beat 10 s ago: past the hasty one's expiry, well within the patient one's.
        try await postgres.execute(
            """
            UPDATE chat_instances SET heartbeat_at = now() - interval '10 seconds'
            WHERE instance_id = ANY(\(["patient-\(tag)", "hasty-\(tag)"]))
            """)
        _ = try await reaper.reapDeadInstances()
        let left = try await postgres.query(
            "SELECT instance_id FROM chat_instances WHERE instance_id LIKE \("%-\(tag)") ORDER BY instance_id"
        ).map { try $0.decode(String.self) }
        #expect(left == ["patient-\(tag)", "reaper-\(tag)"])

        try await postgres.execute("DELETE FROM chat_instances WHERE instance_id LIKE \("%-\(tag)")")
    }
}
