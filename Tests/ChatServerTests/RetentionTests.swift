import ChatCore
import Foundation
import Logging
import Postgres
import Prometheus
import Testing

@testable import ChatServer

@Suite struct RetentionTests {
    @Test func deletesExpiredMessagesAndFilesOnlyWhereEnabled() async throws {
        let directory = NSTemporaryDirectory() + "chat-retention-\(UInt64.random(in: 0...UInt64.max))"
        try await withApp(configure: { $0.uploads.directory = directory }) { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let expiring = try await api.makeGroup(a, with: [b])
            let keeping = try await api.makeGroup(a, with: [b])
            let settings = try await api.request(
                .put, "/chat/rooms/\(expiring)/settings/", token: a.token,
                json: ["auto_delete_enabled": true, "message_retention_days": 1])
            #expect(settings.status == .ok)

            var old: [Int64] = []
            for i in 0..<3 { old.append(try #require(try await api.send(a, expiring, "old \(i)").int("message_id"))) }
            let oldFile = try await api.upload(
                a, expiring, fields: [("message_type", "file")], file: ("old.txt", "text/plain", Array("bye".utf8)))
            old.append(try #require(oldFile.int("message_id")))
            let reply = try #require(
                try await api.send(b, expiring, "recent reply", extra: ["reply_to_message_id": old[0]]).int("message_id"))
            let keptOld = try #require(try await api.send(a, keeping, "old but kept").int("message_id"))
            #expect(try await api.request(.post, "/chat/rooms/\(keeping)/read/", token: b.token).status == .ok)
            #expect((try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0 != ".incoming" }.count == 1)

            // Back-date with SQL, as an operator could.
            let db = PostgresClient(configuration: PostgresConfiguration(url: ProcessInfo.processInfo.environment["DATABASE_URL"]!, poolSize: 1))
            try await db.execute(
                "UPDATE messages SET created_at = now() - interval '2 days' WHERE message_id = ANY(\(old + [keptOld]))")
            // ... and the read mark in `keeping` (its change number 2) past the change log's window.
            try await db.execute(
                "UPDATE room_changes SET changed_at = now() - interval '3 days' WHERE room_id = \(keeping)")

            let service = RetentionService(
                store: RetentionStore(db: db), files: FileStore(db: db), storage: UploadStorage(directory: directory, maxBytes: 1 << 20),
                interval: .seconds(3600), batchSize: 2, changeLogWindow: .seconds(2 * 86_400),
                metrics: ServerMetrics(registry: PrometheusCollectorRegistry()), logger: Logger(label: "retention-test"))
            let deleted = try await service.runOnce()
            #expect((deleted ?? 0) >= 4)
            // Replays can no longer show what went: cursors before it must resync.
            func floor(_ room: Int64) async throws -> Int64? {
                try await db.queryOptionalRow("SELECT seq_floor FROM room_change_floors WHERE room_id = \(room)")?
                    .decode(Int64.self, column: 0)
            }
            #expect(try await floor(expiring) == 4)  // the four old messages were numbered 1...4
            #expect(try await floor(keeping) == 2)
            #expect(try await db.queryRow("SELECT count(*) FROM room_changes WHERE room_id = \(keeping)").decode(Int.self, column: 0) == 0)
            await db.shutdown()

            let remaining = try await api.request(.get, "/chat/rooms/\(expiring)/messages/", token: a.token)
            let ids = remaining.list("messages").compactMap { ($0["message_id"] as? NSNumber)?.int64Value }
            #expect(ids == [reply])
            #expect(remaining.list("messages").first?["reply_to_message_id"] is NSNull)  // its target is gone
            #expect(try await api.request(.get, "/chat/rooms/\(keeping)/messages/", token: a.token).int("total_count") == 1)
            #expect((try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0 != ".incoming" }.isEmpty == true)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

@Suite struct ReadReceiptTests {
    @Test func readEventsRespectTheReadersSetting() async throws {
        let sink = RecordingEventSink()
        try await withApp(events: sink) { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            try await api.send(a, room, "hi")
            #expect(try await api.request(.post, "/chat/rooms/\(room)/read/", token: b.token).status == .ok)
            _ = try await api.request(.put, "/chat/rooms/\(room)/settings/", token: b.token, json: ["read_receipt_enabled": false])
            try await api.send(a, room, "again")
            #expect(try await api.request(.post, "/chat/rooms/\(room)/read/", token: b.token).status == .ok)
            // Both reads are events (the reader's own devices learn the unread count); the
            // second carries receipts off, so others are not told (ChangeFrames).
            let reads = sink.events.compactMap { event -> (Int64, Bool)? in
                if case .messageRead(let state) = event, state.roomID == room { return (state.userID, state.readReceiptsEnabled) }
                return nil
            }
            #expect(reads.map(\.0) == [b.id, b.id])
            #expect(reads.map(\.1) == [true, false])
            #expect(sink.events.contains { if case .messageCreated(let m) = $0 { m.content == "again" } else { false } })
        }
    }
}
