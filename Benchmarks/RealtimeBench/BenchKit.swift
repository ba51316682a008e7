import ChatTestKit
import Foundation
import Postgres

struct BenchUser: Sendable {
    var id: Int64
    var token: String
}

/// Users, rooms and sends for the benchmark, through the API (and SQL where the API has
/// limits the benchmark must exceed, such as 1,000 participants in a room).
struct BenchKit: Sendable {
    let db: PostgresClient

    func user(on server: ServerProcess) async throws -> BenchUser {
        try await users(1, on: server)[0]
    }

    func users(_ count: Int, on server: ServerProcess) async throws -> [BenchUser] {
        let client = HTTPTestClient(port: server.port)
        var users: [BenchUser] = []
        for _ in 0..<count {
            let id = Int64.random(in: 1_000_000_000...9_000_000_000_000)
            let token = try await TestToken.make(secret: RealtimeBench.secret, userID: id, name: "bench\(id % 100_000)")
            let response = try await client.request("GET", "/auth/me", token: token)
            guard response.status == 200 else { throw BenchError("user creation failed: \(response)") }
            users.append(BenchUser(id: id, token: token))
        }
        await client.close()
        return users
    }

    func room(of owner: BenchUser, with members: [BenchUser], on server: ServerProcess) async throws -> Int64 {
        struct Body: Encodable {
            var room_name = "bench"
            var room_type = "group"
            var participant_ids: [Int64]
        }
        let extra = members.isEmpty ? [try await user(on: server)] : []
        let first = Array((members + extra).prefix(50))
        let client = HTTPTestClient(port: server.port)
        let response = try await client.request(
            "POST", "/chat/rooms/", token: owner.token, json: Body(participant_ids: first.map(\.id)))
        await client.close()
        guard response.status == 201, let room = try response.object().int("room_id") else {
            throw BenchError("room creation failed: \(response)")
        }
        let rest = members.dropFirst(first.count).map(\.id)
        if !rest.isEmpty {
            try await db.execute("UPDATE rooms SET max_participants = 10000 WHERE room_id = \(room)")
            try await db.execute(
                "INSERT INTO room_participants (room_id, user_id) SELECT \(room), unnest(\(Array(rest)))")
        }
        return room
    }

    @discardableResult
    func post(_ text: String, by user: BenchUser, room: Int64, via client: HTTPTestClient) async throws -> Int64 {
        struct Body: Encodable { var message_content: String }
        let response = try await client.request(
            "POST", "/chat/rooms/\(room)/messages/", token: user.token, json: Body(message_content: text))
        guard response.status == 201, let id = try response.object().int("message_id") else {
            throw BenchError("send failed: \(response)")
        }
        return id
    }

    /// Messages per second that `users` (one room each) send through `server` in `seconds`.
    func sendRate(users: [BenchUser], rooms: [Int64], server: ServerProcess, seconds: Double) async throws -> Double {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let start = ContinuousClock.now
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for (user, room) in zip(users, rooms) {
                group.addTask {
                    let client = HTTPTestClient(port: server.port)
                    var count = 0
                    while ContinuousClock.now < deadline {
                        try await self.post("throughput", by: user, room: room, via: client)
                        count += 1
                    }
                    await client.close()
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        return Double(total) / (milliseconds(ContinuousClock.now - start) / 1000)
    }

    /// Round trips of a bare pg_notify to a LISTEN connection, in milliseconds.
    func notifyRoundTrips(count: Int, rate: Double) async throws -> [Double] {
        let channel = "bench_\(UInt32.random(in: 0...UInt32.max))"
        let listener = PostgresListener(client: db, channels: [channel], logger: .init(label: "bench"))
        let run = Task { try await listener.run() }
        var events = listener.events.makeAsyncIterator()
        guard case .listening = await events.next() else { throw BenchError("listener did not start") }
        var delays: [Double] = []
        for seq in 0..<count {
            let start = ContinuousClock.now
            try await db.notify(channel: channel, payload: "\(seq)")
            guard case .notification = await events.next() else { throw BenchError("listener stopped") }
            delays.append(milliseconds(ContinuousClock.now - start))
            try await Task.sleep(for: .seconds(1 / rate))
        }
        listener.stop()
        _ = try? await run.value
        return delays
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
