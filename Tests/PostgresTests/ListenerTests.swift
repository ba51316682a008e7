import Logging
import Postgres
import Testing

@Suite struct ListenerTests {
    /// Reads events until `predicate` holds for one; fails after `limit` events.
    func next(
        _ iterator: inout AsyncStream<PostgresListener.Event>.Iterator, limit: Int = 50,
        where predicate: (PostgresListener.Event) -> Bool
    ) async -> PostgresListener.Event? {
        for _ in 0..<limit {
            guard let event = await iterator.next() else { return nil }
            if predicate(event) { return event }
        }
        return nil
    }

    @Test func receivesNotificationsOnQuotedChannelsAndSurvivesTermination() async throws {
        try await withClient(poolSize: 2) { db in
            let channel = "chat \"events\" 채널 \(UInt32.random(in: 0...UInt32.max))"
            let listener = PostgresListener(client: db, channels: [channel], logger: Logger(label: "listener-test"))
            let running = Task { try await listener.run() }
            var events = listener.events.makeAsyncIterator()

            guard case .listening(let firstPID) = await next(&events, where: { if case .listening = $0 { true } else { false } })
            else {
                Issue.record("listener never started")
                return
            }
            try await db.notify(channel: channel, payload: "안녕 {\"room_id\": 1}")
            guard case .notification(let note) = await next(&events, where: { if case .notification = $0 { true } else { false } })
            else {
                Issue.record("no notification")
                return
            }
            #expect(note.channel == channel)
            #expect(note.payload == "안녕 {\"room_id\": 1}")

            // Kill the listening backend: the listener reconnects, says so, and hears again.
            try await db.execute("SELECT pg_terminate_backend(\(firstPID))")
            guard case .listening(let secondPID) = await next(&events, where: { if case .listening = $0 { true } else { false } })
            else {
                Issue.record("listener did not reconnect")
                return
            }
            #expect(secondPID != firstPID)
            try await db.notify(channel: channel, payload: "after")
            guard case .notification(let again) = await next(&events, where: { if case .notification = $0 { true } else { false } })
            else {
                Issue.record("no notification after reconnect")
                return
            }
            #expect(again.payload == "after")

            // Other channels are not heard.
            try await db.notify(channel: channel + "-other", payload: "x")
            try await db.notify(channel: channel, payload: "last")
            guard case .notification(let last) = await next(&events, where: { if case .notification = $0 { true } else { false } })
            else {
                Issue.record("no last notification")
                return
            }
            #expect(last.payload == "last")

            listener.stop()
            try await running.value
            #expect(await events.next() == nil)  // the stream finished
        }
    }

    @Test func quoteIdentifierDoublesQuotes() {
        #expect(PostgresListener.quoteIdentifier("a\"b") == "\"a\"\"b\"")
        #expect(PostgresListener.quoteIdentifier("plain") == "\"plain\"")
    }

    /// A connection waiting for the server when its client shuts down fails instead of
    /// waiting for ever (a server that failed to start used to hang on this).
    @Test(.timeLimit(.minutes(1))) func waitingConnectionFailsWhenTheClientShutsDown() async throws {
        let client = try TestDatabase.client(poolSize: 1, waitTimeout: .seconds(5))
        let connection = try await client.openDedicatedConnection()
        _ = try await connection.simpleQuery("LISTEN shutdown_test")
        let waiting = Task {
            while true { _ = try await connection.waitForNotifications() }
        }
        try await Task.sleep(for: .milliseconds(200))
        await client.shutdown()
        // Fails (non-blocking: the waiter refuses; thread pool: the pool refuses) rather than hangs.
        await #expect(throws: (any Error).self) { try await waiting.value }
        await #expect(throws: (any Error).self) { try await connection.simpleQuery("SELECT 1") }
    }
}
