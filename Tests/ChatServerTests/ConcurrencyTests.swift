import Foundation
import Testing

@Suite struct ConcurrencyTests {
    @Test func simultaneousDirectCreatesGiveOneRoom() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let results = try await withThrowingTaskGroup(of: (Int, Int64?).self) { group in
                for i in 0..<10 {
                    group.addTask {
                        let (from, to) = i % 2 == 0 ? (a, b) : (b, a)
                        let response = try await api.request(
                            .post, "/chat/rooms/", token: from.token, json: ["room_type": "direct", "participant_ids": [to.id]])
                        return (response.status.code, response.int("room_id"))
                    }
                }
                return try await group.reduce(into: [(Int, Int64?)]()) { $0.append($1) }
            }
            #expect(Set(results.map(\.1)).count == 1, "\(results)")
            #expect(results.filter { $0.0 == 201 }.count == 1)
            #expect(results.filter { $0.0 == 200 }.count == 9)
            #expect(try await api.request(.get, "/chat/rooms/", token: a.token).int("total_count") == 1)
        }
    }

    @Test func simultaneousSendsWithOneClientMessageIDGiveOneMessage() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let results = try await withThrowingTaskGroup(of: (Int, Int64?).self) { group in
                for i in 0..<10 {
                    group.addTask {
                        let response = try await api.send(a, room, "attempt \(i)", extra: ["client_message_id": "same"])
                        return (response.status.code, response.int("message_id"))
                    }
                }
                return try await group.reduce(into: [(Int, Int64?)]()) { $0.append($1) }
            }
            #expect(Set(results.map(\.1)).count == 1)
            #expect(results.filter { $0.0 == 201 }.count == 1)
            #expect(results.filter { $0.0 == 200 }.count == 9)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/messages/", token: a.token).int("total_count") == 1)
        }
    }

    /// Message ids follow commit order within a room: concurrent senders never produce a
    /// history where a smaller id appears after a larger one was already visible.
    @Test func concurrentSendsKeepIdsInCommitOrder() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let sent = try await withThrowingTaskGroup(of: Int64?.self) { group in
                for i in 0..<40 {
                    group.addTask { try await api.send(i % 2 == 0 ? a : b, room, "n\(i)").int("message_id") }
                }
                return try await group.reduce(into: [Int64]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(sent.count == 40)
            let history = try await api.request(.get, "/chat/rooms/\(room)/messages/?size=100", token: a.token)
            let ids = history.list("messages").compactMap { ($0["message_id"] as? NSNumber)?.int64Value }
            #expect(ids == sent.sorted(by: >))
        }
    }
}
