import ChatTestKit
import Foundation
import Postgres
import Testing

/// Several instances on one database, as behind a load balancer.
@Suite(.serialized) struct ClusterTests {
    @Test func fiveSendersTwentySubscribersTwoInstancesExactlyOnceInOrder() async throws {
        try await withCluster(2) { cluster in
            let senders = try await (0..<5).asyncMap { _ in try await cluster.makeUser("sender") }
            let readers = try await (0..<20).asyncMap { _ in try await cluster.makeUser("reader") }
            let room = try await cluster.makeGroup(senders[0], with: Array(senders.dropFirst()) + readers)
            var sockets: [WebSocketTestClient] = []
            for (index, reader) in readers.enumerated() {
                sockets.append(try await cluster.socket(index.isMultiple(of: 2) ? cluster.a : cluster.b, room: room, as: reader))
            }
            // Every socket is live once it answers a ping.
            for socket in sockets {
                try await socket.send(text: #"{"type":"ping"}"#)
                _ = try await socket.next(type: "pong")
            }
            let sent = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for (index, sender) in senders.enumerated() {
                    let server = index.isMultiple(of: 2) ? cluster.a : cluster.b
                    group.addTask {
                        let client = cluster.http(server)
                        var ids: [Int64] = []
                        for i in 0..<100 { ids.append(try await cluster.post("\(index)-\(i)", by: sender, room: room, via: client)) }
                        await client.close()
                        return ids
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(sent.count == 500)
            let expected = sent.sorted()
            for socket in sockets {
                #expect(try await socket.messageIDs(count: 500) == expected)
                try await socket.send(text: #"{"type":"ping"}"#)
                _ = try await socket.next(type: "pong")
                #expect(!socket.takeSkipped().contains { if case .text(let t) = $0 { t.contains(#""type":"message""#) } else { false } })
                try await socket.close()
            }
        }
    }

    @Test func aThousandMemberRoomOnTwoInstancesGetsEveryMessageOnceInOrder() async throws {
        try await withCluster(2) { cluster in
            let owner = try await cluster.makeUser("owner")
            var members: [Chatter] = []
            for _ in 0..<20 {
                members += try await withThrowingTaskGroup(of: Chatter.self) { group in
                    for _ in 0..<50 { group.addTask { try await cluster.makeUser("member") } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            struct Body: Encodable {
                var room_name = "everyone"
                var room_type = "group"
                var max_participants = 1001
                var participant_ids: [Int64]
            }
            let http = cluster.http(cluster.a)
            let created = try await http.request(
                "POST", "/chat/rooms/", token: owner.token, json: Body(participant_ids: members.map(\.id)))
            #expect(created.status == 201, "\(created)")
            let room = try #require(try created.object().int("room_id"))
            // Every fifth member listens, half on each instance, each live once it answered a
            // ping. Not all 1,000: every socket that opens sends an online-status frame to every
            // socket already open (quadratic in the sockets), which a debug build takes minutes
            // over; the fan-out rate is the benchmark's job, delivery to exactly the members is this.
            let listeners = stride(from: 0, to: members.count, by: 5).map { members[$0] }
            var sockets: [WebSocketTestClient] = []
            for batch in stride(from: 0, to: listeners.count, by: 50) {
                sockets += try await withThrowingTaskGroup(of: WebSocketTestClient.self) { group in
                    for index in batch..<min(batch + 50, listeners.count) {
                        let member = listeners[index]
                        group.addTask {
                            let socket = try await cluster.socket(
                                index.isMultiple(of: 2) ? cluster.a : cluster.b, room: room, as: member)
                            try await socket.ready()
                            return socket
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            var posted: [Int64] = []
            for i in 0..<50 { posted.append(try await cluster.post("to all \(i)", by: owner, room: room, via: http)) }
            let sent = posted
            let received = try await withThrowingTaskGroup(of: Bool.self) { group in
                for socket in sockets {
                    group.addTask {
                        let ids = try await socket.messageIDs(count: sent.count)
                        try await socket.ready()
                        let extra = socket.takeSkipped().contains {
                            if case .text(let t) = $0 { t.contains(#""type":"message""#) } else { false }
                        }
                        try await socket.close()
                        return ids == sent && !extra
                    }
                }
                return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
            }
            #expect(received == listeners.count)
            await http.close()
        }
    }

    @Test func listenerConnectionTerminatedMidStreamLosesNothing() async throws {
        try await withCluster(2) { cluster in
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let socket = try await cluster.socket(cluster.b, room: room, as: bob)
            try await socket.send(text: #"{"type":"ping"}"#)
            _ = try await socket.next(type: "pong")
            let sender = Task {
                let client = cluster.http(cluster.a)
                var ids: [Int64] = []
                for i in 0..<300 { ids.append(try await cluster.post("m\(i)", by: alice, room: room, via: client)) }
                await client.close()
                return ids
            }
            var terminated = 0
            for _ in 0..<3 {
                try await Task.sleep(for: .milliseconds(150))
                // Only this test's instances: other tests run their own servers meanwhile.
                terminated += try await cluster.database.query(
                    """
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE application_name IN (\(cluster.applicationName(cluster.a)), \(cluster.applicationName(cluster.b)))
                      AND query LIKE 'LISTEN%'
                    """
                ).count
            }
            #expect(terminated >= 2)
            let sent = try await sender.value
            #expect(try await socket.messageIDs(count: sent.count) == sent)
            try await socket.send(text: #"{"type":"ping"}"#)
            _ = try await socket.next(type: "pong")
            #expect(!socket.takeSkipped().contains { if case .text(let t) = $0 { t.contains(#""type":"message""#) } else { false } })
            try await socket.close()
        }
    }

    @Test func killedInstanceUsersGoOfflineAndTheOtherKeepsServing() async throws {
        try await withCluster(
            2, environment: ["PRESENCE_HEARTBEAT_SECONDS": "1", "PRESENCE_EXPIRY_SECONDS": "4"]
        ) { cluster in
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let watcher = try await cluster.socket(cluster.b, room: room, as: bob)
            try await watcher.ready()
            let doomed = try await cluster.socket(cluster.a, room: room, as: alice)
            let online = try await watcher.next(type: "user_status")
            #expect(online.int("user_id") == alice.id && online.string("status") == "online")
            // Typing crosses instances too.
            try await doomed.send(text: #"{"type":"typing","is_typing":true}"#)
            let typing = try await watcher.next(type: "typing")
            #expect(typing.int("user_id") == alice.id && typing.bool("is_typing") == true)
            // A message committed on A just before it dies still reaches B's clients.
            let lastWords = try await cluster.post("last words", by: alice, room: room, via: cluster.http(cluster.a))
            await cluster.a.kill()
            #expect(try await watcher.next(type: "message").int("message_id") == lastWords)
            let offline = try await watcher.next(type: "user_status", timeout: .seconds(30))
            #expect(offline.int("user_id") == alice.id && offline.string("status") == "offline")
            doomed.abort()
            let onB = cluster.http(cluster.b)
            let status = try await onB.request("GET", "/chat/rooms/\(room)/online-status/", token: bob.token)
            let entry = try #require(try status.json().arrayValue?.compactMap(\.objectValue).first { $0.int("user_id") == alice.id })
            #expect(entry.bool("is_online") == false && entry.string("last_seen") != nil)
            let id = try await cluster.post("still here", by: bob, room: room, via: onB)
            #expect(try await watcher.next(type: "message").int("message_id") == id)
            try await watcher.close()
            await onB.close()
        }
    }

    @Test func aClientThatDoesNotReadIsDisconnectedWith4408() async throws {
        try await withCluster(
            1, environment: ["WS_OUTBOUND_QUEUE_FRAMES": "64", "WS_OUTBOUND_QUEUE_BYTES": "65536"]
        ) { cluster in
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let slow = try await WebSocketTestClient.connect(
                port: cluster.a.port, path: "/chat/ws/\(room)?token=\(bob.token)", receiveBufferSize: 4096)
            let healthy = try await cluster.socket(cluster.a, room: room, as: alice)
            try await slow.send(text: #"{"type":"ping"}"#)
            _ = try await slow.next(type: "pong")
            await slow.pauseReading()
            let http = cluster.http(cluster.a)
            let text = String(repeating: "가", count: 3000)  // 9 kB of UTF-8 per message
            // 8 MB in all: more than the kernel's socket buffers (4 MB at most here) can absorb.
            var sent: [Int64] = []
            for _ in 0..<900 { sent.append(try await cluster.post(text, by: alice, room: room, via: http)) }
            // The healthy subscriber is not held back by the slow one.
            #expect(try await healthy.messageIDs(count: sent.count) == sent)
            let metrics = try await http.request("GET", "/metrics")
            #expect(metrics.text.contains("chat_ws_slow_client_closes_total 1"), "\(metrics.text.prefix(2000))")
            // Reading again, the slow client finds a bounded, in-order prefix of the messages
            // (what was in flight when it fell behind) and then the 4408 close frame: the
            // frames still queued were dropped, so the close frame came next.
            await slow.resumeReading()
            var received: [Int64] = []
            var closeCode: Int?
            readLoop: while true {
                switch try await slow.next(timeout: .seconds(20)) {
                case .text(let text):
                    if let object = try? JSONObject(parsing: text), object.type == "message", let id = object.int("message_id") {
                        received.append(id)
                    }
                case .binary: break
                case .close(let code, _):
                    closeCode = code
                    break readLoop
                }
            }
            #expect(received.count < 60, "\(received.count) messages were still in flight")
            #expect(received == Array(sent.prefix(received.count)))
            #expect(closeCode == 4408)
            try await healthy.close()
            await http.close()
        }
    }

    @Test func aSocketThatStopsAnsweringPingsIsDropped() async throws {
        try await withCluster(1, environment: ["WS_PING_SECONDS": "1"]) { cluster in
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let watcher = try await cluster.socket(cluster.a, room: room, as: bob)
            try await watcher.ready()
            let silent = try await cluster.socket(cluster.a, room: room, as: alice)
            #expect(try await watcher.next(type: "user_status", about: alice.id).string("status") == "online")
            // Stop reading: pings go unanswered, as from a vanished phone.
            await silent.pauseReading()
            #expect(try await watcher.next(type: "user_status", about: alice.id, timeout: .seconds(20)).string("status") == "offline")
            await silent.resumeReading()
            #expect(try await silent.closeEvent(timeout: .seconds(20)).reason.contains("Ping") || silent.isClosed)
            try await watcher.close()
        }
    }

    @Test func twoInstancesBehindNginx() async throws {
        try await withCluster(2) { cluster in
            let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("chat-nginx-\(UUID())")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            let nginx = NginxProcess(
                listenPort: try ServerProcess.freePort(), upstreamPorts: [cluster.a.port, cluster.b.port], workDirectory: work)
            try await nginx.start()
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let socket = try await WebSocketTestClient.connect(port: nginx.listenPort, path: "/chat/ws/\(room)?token=\(bob.token)")
            try await socket.send(text: #"{"type":"ping"}"#)
            _ = try await socket.next(type: "pong")
            // Round robin: consecutive requests alternate between the two instances, so with
            // fresh connections some of these posts are served by the other instance.
            var sent: [Int64] = []
            for i in 0..<6 {
                let client = HTTPTestClient(port: nginx.listenPort)
                sent.append(try await cluster.post("via nginx \(i)", by: alice, room: room, via: client))
                await client.close()
            }
            #expect(try await socket.messageIDs(count: sent.count) == sent)
            try await socket.close()
            await nginx.stop()
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
