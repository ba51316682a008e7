import ChatTestKit
import Foundation
import Testing

/// The per-room socket on one instance: every client frame, every event, every close code.
@Suite(.serialized) struct RoomSocketTests {
    struct Frame: Encodable {
        var type: String
        var content: String? = nil
        var message_type: String? = nil
        var client_message_id: String? = nil
        var reply_to_message_id: Int64? = nil
        var is_typing: Bool? = nil
        var message_id: Int64? = nil
    }

    @Test func closeCodes() async throws {
        try await withCluster(1) { cluster in
            let (owner, stranger) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(owner, with: [])
            let port = cluster.a.port
            let expired = try await TestToken.make(secret: Cluster.secret, userID: owner.id, expiresIn: -60)
            let forged = try await TestToken.make(secret: Cluster.secret + "x", userID: owner.id)
            let cases: [(String, Int)] = [
                ("/chat/ws/\(room)", 4401),
                ("/chat/ws/\(room)?token=garbage", 4401),
                ("/chat/ws/\(room)?token=\(expired)", 4401),
                ("/chat/ws/\(room)?token=\(forged)", 4401),
                ("/chat/ws?token=garbage", 4401),
                ("/chat/ws/\(room)?token=\(stranger.token)", 4403),
                ("/chat/ws/987654321?token=\(owner.token)", 4404),
                ("/chat/ws/abc?token=\(owner.token)", 4404),
                ("/chat/ws/\(room)?token=\(owner.token)&last_message_id=x", 4400),
                ("/chat/ws/\(room)?token=\(owner.token)&last_message_id=-1", 4400),
            ]
            for (path, code) in cases {
                let socket = try await WebSocketTestClient.connect(port: port, path: path)
                let close: (code: Int?, reason: String)
                do {
                    close = try await socket.closeEvent(timeout: .seconds(20))
                } catch {
                    Issue.record("\(path): \(error)")
                    continue
                }
                #expect(close.code == code, "\(path)")
                #expect(!close.reason.isEmpty, "\(path)")
            }
            // The Authorization header works as well as ?token=.
            let viaHeader = try await WebSocketTestClient.connect(
                port: port, path: "/chat/ws/\(room)", headers: [("Authorization", "Bearer \(owner.token)")])
            try await viaHeader.send(object: Frame(type: "ping"))
            #expect(try await viaHeader.nextObject().type == "pong")
            try await viaHeader.close()
        }
    }

    @Test func messagesTypingReadsAndEdits() async throws {
        try await withCluster(1) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let http = cluster.http(cluster.a)
            let bobSocket = try await cluster.socket(cluster.a, room: room, as: bob)
            try await bobSocket.ready()
            let aliceSocket = try await cluster.socket(cluster.a, room: room, as: alice)

            let online = try await bobSocket.next(type: "user_status")
            #expect(online.int("user_id") == alice.id && online.string("status") == "online")
            #expect(online.string("user_name") == alice.name && online.int("room_id") == room)

            // A WebSocket message: the sender's copy is the ack; everyone gets it once.
            try await aliceSocket.send(
                object: Frame(type: "message", content: "안녕하세요 😊", client_message_id: "c-1"))
            let ack = try await aliceSocket.next(type: "message")
            let seen = try await bobSocket.next(type: "message")
            #expect(ack == seen)
            #expect(ack.string("content") == "안녕하세요 😊" && ack.string("client_message_id") == "c-1")
            #expect(ack.int("sender_id") == alice.id && ack.string("sender_name") == alice.name)
            #expect(ack.string("message_type") == "text" && ack.int("room_id") == room)
            for key in ["file_url", "file_name", "file_size", "reply_to_message_id"] { #expect(ack.isNull(key)) }
            #expect(ack.string("timestamp")?.hasSuffix("Z") == true)
            let first = try #require(ack.int("message_id"))

            // The same client_message_id again: acked with the same message, not stored twice.
            try await aliceSocket.send(
                object: Frame(type: "message", content: "안녕하세요 😊", client_message_id: "c-1"))
            #expect(try await aliceSocket.next(type: "message").int("message_id") == first)

            // REST sends reach sockets too, with replies.
            struct Reply: Encodable {
                var message_content: String
                var reply_to_message_id: Int64
            }
            let replied = try await http.request(
                "POST", "/chat/rooms/\(room)/messages/", token: bob.token,
                json: Reply(message_content: "reply", reply_to_message_id: first))
            #expect(replied.status == 201)
            let reply = try await aliceSocket.next(type: "message")
            #expect(reply.int("reply_to_message_id") == first && reply.int("sender_id") == bob.id)
            #expect(try await bobSocket.next(type: "message").int("message_id") == reply.int("message_id"))

            // Typing goes to the others only.
            try await aliceSocket.send(object: Frame(type: "typing", is_typing: true))
            let typing = try await bobSocket.next(type: "typing")
            #expect(typing.int("user_id") == alice.id && typing.bool("is_typing") == true)
            #expect(typing.string("user_name") == alice.name)

            // Reads: over the socket and over REST.
            try await bobSocket.send(object: Frame(type: "read"))
            let read = try await aliceSocket.next(type: "message_read")
            #expect(read.int("user_id") == bob.id && read.string("user_name") == bob.name)
            #expect(read.string("last_read_at") != nil)
            struct ReadBody: Encodable { var message_id: Int64 }
            _ = try await http.request("POST", "/chat/rooms/\(room)/read/", token: alice.token, json: ReadBody(message_id: first))
            #expect(try await bobSocket.next(type: "message_read", about: alice.id).string("last_read_at") != nil)

            // Edit and delete.
            struct Edit: Encodable { var message_content: String }
            let edited = try await http.request(
                "PUT", "/chat/rooms/\(room)/messages/\(first)/", token: alice.token, json: Edit(message_content: "edited"))
            #expect(edited.status == 200)
            let update = try await bobSocket.next(type: "message_updated")
            #expect(update.int("message_id") == first && update.string("message_content") == "edited")
            #expect(update.bool("is_edited") == true)
            #expect(try await http.request("DELETE", "/chat/rooms/\(room)/messages/\(first)/", token: alice.token).status == 200)
            let deletion = try await bobSocket.next(type: "message_deleted")
            #expect(deletion.int("message_id") == first && deletion.bool("is_deleted") == true)
            #expect(deletion.isNull("message_content"))

            // A reader who turned receipts off is not announced.
            struct Settings: Encodable { var read_receipt_enabled: Bool }
            _ = try await http.request(
                "PUT", "/chat/rooms/\(room)/settings/", token: bob.token, json: Settings(read_receipt_enabled: false))
            try await aliceSocket.ready()
            _ = aliceSocket.takeSkipped()
            try await bobSocket.send(object: Frame(type: "read"))
            try await bobSocket.send(object: Frame(type: "ping"))
            #expect(try await bobSocket.next(type: "pong").type == "pong")
            try await aliceSocket.send(object: Frame(type: "ping"))
            _ = try await aliceSocket.next(type: "pong")
            #expect(!aliceSocket.takeSkipped().contains { if case .text(let t) = $0 { t.contains("message_read") } else { false } })

            // Closing while typing tells the others typing stopped, then that the user left.
            try await aliceSocket.close()
            let stopped = try await bobSocket.next(type: "typing")
            #expect(stopped.int("user_id") == alice.id && stopped.bool("is_typing") == false)
            let offline = try await bobSocket.next(type: "user_status")
            #expect(offline.int("user_id") == alice.id && offline.string("status") == "offline")
            try await bobSocket.close()
            await http.close()
        }
    }

    @Test func badFramesGetErrorFramesAndTheSocketStaysOpen() async throws {
        try await withCluster(1) { cluster in
            let alice = try await cluster.makeUser()
            let room = try await cluster.makeGroup(alice, with: [])
            let socket = try await cluster.socket(cluster.a, room: room, as: alice)
            let bad: [String] = [
                "not json",
                "[1, 2]",
                #"{"no_type": true}"#,
                #"{"type": "dance"}"#,
                #"{"type": "message", "content": "   "}"#,
                #"{"type": "message"}"#,
                #"{"type": "message", "content": 42}"#,
                #"{"type": "message", "content": "x", "message_type": "sticker"}"#,
                #"{"type": "message", "content": "x", "message_type": "image"}"#,
                #"{"type": "message", "content": "x", "reply_to_message_id": 999999999}"#,
                #"{"type": "message", "content": "x", "client_message_id": "\#(String(repeating: "k", count: 65))"}"#,
                #"{"type": "message", "content": "\#(String(repeating: "a", count: 10_001))"}"#,
                #"{"type": "typing"}"#,
                #"{"type": "read", "message_id": 999999999}"#,
                "{\"type\": \"message\", \"content\": \"\(String(repeating: "b", count: 70_000))\"}",
            ]
            for text in bad {
                try await socket.send(text: text)
                let reply = try await socket.nextObject()
                #expect(reply.type == "error", "\(text.prefix(60))")
                #expect((reply.string("detail") ?? "").isEmpty == false)
            }
            try await socket.send(binary: [1, 2, 3])
            #expect(try await socket.nextObject().type == "error")
            // Still open, and nothing was stored.
            try await socket.send(object: Frame(type: "ping"))
            #expect(try await socket.nextObject().type == "pong")
            let page = try await cluster.http(cluster.a).request("GET", "/chat/rooms/\(room)/messages/", token: alice.token)
            #expect(try page.object().int("total_count") == 0)
            try await socket.close()
        }
    }

    /// The protocol itself, spoken by the server's channel handler (`WebSocketConnection`):
    /// a message in fragments is joined (a ping between them is fine), a client's close gets
    /// its own code back (1002 for a payload that holds none) and what it sent before is still
    /// handled, a message over 1 MiB or a frame out of place closes the socket with 1009, text
    /// that is not UTF-8 with 1007, and a client that half-closes its connection is hung up on.
    @Test func theProtocolIsSpokenByTheChannel() async throws {
        try await withCluster(1) { cluster in
            let alice = try await cluster.makeUser()
            let room = try await cluster.makeGroup(alice, with: [])
            let socket = try await cluster.socket(cluster.a, room: room, as: alice)
            try await socket.send(frame: .text, payload: Array(#"{"type""#.utf8), fin: false)
            try await socket.send(frame: .ping, payload: [1, 2, 3])
            try await socket.send(frame: .continuation, payload: Array(#":"pi"#.utf8), fin: false)
            try await socket.send(frame: .continuation, payload: Array(#"ng"}"#.utf8))
            #expect(try await socket.nextObject().type == "pong")
            try await socket.close(code: 4000)
            #expect(try await socket.closeEvent().code == 4000)

            let tooLarge = try await cluster.socket(cluster.a, room: room, as: alice)
            let half = [UInt8](repeating: UInt8(ascii: "a"), count: 600_000)
            try await tooLarge.send(frame: .text, payload: half, fin: false)
            try await tooLarge.send(frame: .continuation, payload: half)
            #expect(try await tooLarge.closeEvent().code == 1009)

            let stray = try await cluster.socket(cluster.a, room: room, as: alice)
            try await stray.send(frame: .continuation, payload: [UInt8(ascii: "a")])
            #expect(try await stray.closeEvent().code == 1009)

            let interleaved = try await cluster.socket(cluster.a, room: room, as: alice)
            try await interleaved.send(frame: .text, payload: [UInt8(ascii: "{")], fin: false)
            try await interleaved.send(frame: .text, payload: [UInt8(ascii: "{")])
            #expect(try await interleaved.closeEvent().code == 1009)

            // Text that is not UTF-8: 1007.
            let notUTF8 = try await cluster.socket(cluster.a, room: room, as: alice)
            try await notUTF8.send(frame: .text, payload: Array(#"{"type":"ping","x":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8))
            #expect(try await notUTF8.closeEvent().code == 1007)

            // Messages sent right before the client's own close are still stored.
            let closing = try await cluster.socket(cluster.a, room: room, as: alice)
            for index in 1...3 {
                try await closing.send(object: Frame(type: "message", content: "last \(index)", client_message_id: "last-\(index)"))
            }
            try await closing.close()
            var stored: Int64 = 0
            for _ in 0..<100 {
                let page = try await cluster.http(cluster.a).request("GET", "/chat/rooms/\(room)/messages/", token: alice.token)
                stored = try page.object().int("total_count") ?? 0
                if stored == 3 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(stored == 3)

            // A control frame over 125 bytes: NIO's decoder refuses it, the server says 1009.
            let longPing = try await cluster.socket(cluster.a, room: room, as: alice)
            try await longPing.send(frame: .ping, payload: [UInt8](repeating: 1, count: 200))
            #expect(try await longPing.closeEvent().code == 1009)

            // A close payload of one byte cannot hold a code: answered with 1002.
            let brokenClose = try await cluster.socket(cluster.a, room: room, as: alice)
            try await brokenClose.send(frame: .connectionClose, payload: [3])
            #expect(try await brokenClose.closeEvent().code == 1002)

            // A FIN without a close frame: the server closes the connection (without a frame).
            let halfClosed = try await cluster.socket(cluster.a, room: room, as: alice)
            try await halfClosed.ready()
            try await halfClosed.shutdownOutput()
            #expect(try await halfClosed.closeEvent().code == nil)
        }
    }

    @Test func membershipChangesAreAnnouncedAndCutAccess() async throws {
        try await withCluster(1) { cluster in
            let (owner, bob, carol) = (try await cluster.makeUser(), try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(owner, with: [bob])
            let http = cluster.http(cluster.a)
            let ownerSocket = try await cluster.socket(cluster.a, room: room, as: owner)
            try await ownerSocket.ready()
            let bobSocket = try await cluster.socket(cluster.a, room: room, as: bob)
            _ = try await ownerSocket.next(type: "user_status")

            struct Add: Encodable { var user_ids: [Int64] }
            #expect(try await http.request("POST", "/chat/rooms/\(room)/participants/", token: owner.token, json: Add(user_ids: [carol.id])).status == 200)
            let joined = try await bobSocket.next(type: "participant_joined")
            #expect(joined.int("user_id") == carol.id && joined.string("user_name") == carol.name)

            // Removed by the API: the others hear it; the removed user's socket closes with 4403.
            #expect(try await http.request("DELETE", "/chat/rooms/\(room)/participants/\(bob.id)/", token: owner.token).status == 200)
            let left = try await ownerSocket.next(type: "participant_left")
            #expect(left.int("user_id") == bob.id)
            #expect(try await bobSocket.closeEvent().code == 4403)
            // ... and gets no more of the room's messages (a new socket is refused).
            let again = try await cluster.socket(cluster.a, room: room, as: bob)
            #expect(try await again.closeEvent().code == 4403)

            // Deactivated with SQL (as an operator would): access is cut the same way.
            let carolSocket = try await cluster.socket(cluster.a, room: room, as: carol)
            _ = try await ownerSocket.next(type: "user_status")
            try await cluster.database.execute(
                "UPDATE room_participants SET is_active = false WHERE room_id = \(room) AND user_id = \(carol.id)")
            #expect(try await carolSocket.closeEvent().code == 4403)
            #expect(try await ownerSocket.next(type: "participant_left").int("user_id") == carol.id)

            // Deleted with SQL: the same.
            let dave = try await cluster.makeUser()
            #expect(try await http.request("POST", "/chat/rooms/\(room)/participants/", token: owner.token, json: Add(user_ids: [dave.id])).status == 200)
            let daveSocket = try await cluster.socket(cluster.a, room: room, as: dave)
            try await daveSocket.ready()
            try await cluster.database.execute("DELETE FROM room_participants WHERE room_id = \(room) AND user_id = \(dave.id)")
            #expect(try await daveSocket.closeEvent().code == 4403)

            // Even when the removal is never announced (its notification lost), a removed
            // user gets no further message: delivery checks membership first.
            let erin = try await cluster.makeUser()
            #expect(try await http.request("POST", "/chat/rooms/\(room)/participants/", token: owner.token, json: Add(user_ids: [erin.id])).status == 200)
            let erinSocket = try await cluster.socket(cluster.a, room: room, as: erin)
            try await erinSocket.ready()
            try await cluster.removeSilently(erin, from: room)
            let secret = try await cluster.post("not for erin", by: owner, room: room, via: http)
            #expect(try await ownerSocket.next(type: "message").int("message_id") == secret)
            let erinClose = try await erinSocket.closeCode { #expect(!$0.contains("not for erin")) }
            #expect(erinClose == 4403)
            try await ownerSocket.close()
            await http.close()
        }
    }

    @Test func changesMadeWithSQLReachLiveClients() async throws {
        try await withCluster(1) { cluster in
            let alice = try await cluster.makeUser()
            let room = try await cluster.makeGroup(alice, with: [])
            let http = cluster.http(cluster.a)
            let socket = try await cluster.socket(cluster.a, room: room, as: alice)
            let id = try await cluster.post("to be deleted", by: alice, room: room, via: http)
            #expect(try await socket.next(type: "message").int("message_id") == id)
            try await cluster.database.execute("UPDATE messages SET is_deleted = true WHERE message_id = \(id)")
            let deleted = try await socket.next(type: "message_deleted")
            #expect(deleted.int("message_id") == id && deleted.isNull("message_content"))
            try await cluster.database.execute(
                """
                INSERT INTO messages (room_id, sender_id, message_content, message_type)
                VALUES (\(room), \(alice.id), 'from psql', 'text')
                """)
            #expect(try await socket.next(type: "message").string("content") == "from psql")
            try await socket.close()
            await http.close()
        }
    }

    @Test func catchUpSendsHistoryThenLiveWithoutGapOrDuplicate() async throws {
        // Three messages per catch-up query: catching up takes many round trips, so live
        // messages certainly arrive meanwhile and are held back, then merged.
        try await withCluster(1, environment: ["WS_CATCH_UP_BATCH": "3"]) { cluster in
            let alice = try await cluster.makeUser()
            let room = try await cluster.makeGroup(alice, with: [])
            let http = cluster.http(cluster.a)
            var sent: [Int64] = []
            for i in 0..<30 { sent.append(try await cluster.post("before \(i)", by: alice, room: room, via: http)) }
            // Catch up from the 10th message while 200 more are sent concurrently.
            let sender = Task {
                let client = cluster.http(cluster.a)
                var ids: [Int64] = []
                for i in 0..<200 { ids.append(try await cluster.post("during \(i)", by: alice, room: room, via: client)) }
                await client.close()
                return ids
            }
            var sockets: [WebSocketTestClient] = []
            for _ in 0..<5 {
                sockets.append(try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_message_id=\(sent[9])"))
                try await Task.sleep(for: .milliseconds(20))
            }
            let during = try await sender.value
            let expected = Array(sent[10...]) + during
            for socket in sockets {
                #expect(try await socket.messageIDs(count: expected.count) == expected)
                try await socket.send(object: Frame(type: "ping"))
                _ = try await socket.next(type: "pong")
                #expect(!socket.takeSkipped().contains { if case .text(let t) = $0 { t.contains(#""type":"message""#) } else { false } })
                try await socket.close()
            }
            // A cursor beyond the room's newest message counts as "up to date", not as a
            // reason to skip what comes next.
            let ahead = try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_message_id=9000000000000")
            try await ahead.ready()
            let next = try await cluster.post("after the future", by: alice, room: room, via: http)
            #expect(try await ahead.messageIDs(count: 1) == [next])
            try await ahead.close()
            // From 0: the whole history.
            let full = try await cluster.socket(cluster.a, room: room, as: alice, query: "&last_message_id=0")
            #expect(try await full.messageIDs(count: sent.count + during.count + 1) == sent + during + [next])
            try await full.close()
            await http.close()
        }
    }

    @Test func userStreamFollowsTheRoomList() async throws {
        try await withCluster(1) { cluster in
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let stream = try await cluster.socket(cluster.a, room: nil, as: bob)
            try await stream.send(object: Frame(type: "ping"))
            #expect(try await stream.nextObject().type == "pong")
            let room = try await cluster.makeGroup(alice, with: [bob])
            let created = try await stream.next(type: "room_created")
            #expect(created.int("room_id") == room && created.string("room_name") == "room")
            #expect(created.int("participant_count") == 2)
            let http = cluster.http(cluster.a)
            let id = try await cluster.post("for the list", by: alice, room: room, via: http)
            let message = try await stream.next(type: "message")
            #expect(message.int("message_id") == id && message.int("room_id") == room)
            _ = try await http.request("POST", "/chat/rooms/\(room)/read/", token: bob.token)
            let read = try await stream.next(type: "message_read")
            #expect(read.int("user_id") == bob.id && read.int("unread_count") == 0)
            // With read receipts off, bob's own devices still learn his unread count.
            struct Settings: Encodable { var read_receipt_enabled: Bool }
            _ = try await http.request(
                "PUT", "/chat/rooms/\(room)/settings/", token: bob.token, json: Settings(read_receipt_enabled: false))
            let unseen = try await cluster.post("while receipts are off", by: alice, room: room, via: http)
            #expect(try await stream.next(type: "message").int("message_id") == unseen)
            _ = try await http.request("POST", "/chat/rooms/\(room)/read/", token: bob.token)
            let privateRead = try await stream.next(type: "message_read")
            #expect(privateRead.int("last_read_message_id") == unseen && privateRead.int("unread_count") == 0)
            // Only ping is accepted from the client on the user stream.
            try await stream.send(object: Frame(type: "typing", is_typing: true))
            #expect(try await stream.nextObject().type == "error")
            try await stream.close()
            await http.close()
        }
    }

    @Test func userStreamHearsRemovalsAndRenames() async throws {
        try await withCluster(2) { cluster in
            let (alice, bob, carol) = (
                try await cluster.makeUser("alice"), try await cluster.makeUser("bob"), try await cluster.makeUser("carol")
            )
            let room = try await cluster.makeGroup(alice, with: [bob, carol])
            let bobStream = try await cluster.socket(cluster.b, room: nil, as: bob)
            try await bobStream.ready()
            let carolStream = try await cluster.socket(cluster.a, room: nil, as: carol)
            try await carolStream.ready()
            let http = cluster.http(cluster.a)

            // A rename made with SQL reaches every participant's room list, on any instance.
            try await cluster.database.execute(
                "UPDATE rooms SET room_name = '새 이름', room_description = '설명' WHERE room_id = \(room)")
            for stream in [bobStream, carolStream] {
                let updated = try await stream.next(type: "room_updated")
                #expect(updated.int("room_id") == room)
                #expect(updated.string("room_name") == "새 이름")
                #expect(updated.int("participant_count") == 3)
            }

            // The creator removes bob (API, instance A); bob's stream on B hears it and nothing more.
            let removed = try await http.request("DELETE", "/chat/rooms/\(room)/participants/\(bob.id)/", token: alice.token)
            #expect(removed.status == 200)
            #expect(try await bobStream.next(type: "room_removed").int("room_id") == room)
            // Carol leaves by SQL: her stream hears it too.
            try await cluster.database.execute(
                "UPDATE room_participants SET is_active = false WHERE room_id = \(room) AND user_id = \(carol.id)")
            #expect(try await carolStream.next(type: "room_removed").int("room_id") == room)
            try await cluster.post("after they left", by: alice, room: room, via: http)
            for stream in [bobStream, carolStream] {
                try await stream.ready()
                #expect(!stream.takeSkipped().contains { if case .text(let t) = $0 { t.contains(#""type":"message""#) } else { false } })
            }
            try await bobStream.close()
            try await carolStream.close()
            await http.close()
        }
    }

    @Test func socketsEndWithTheirUserOrTheirToken() async throws {
        try await withCluster(2) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            let roomSocket = try await cluster.socket(cluster.b, room: room, as: bob)
            try await roomSocket.ready()
            let stream = try await cluster.socket(cluster.a, room: nil, as: bob)
            try await stream.ready()
            // An operator deactivates bob: his sockets on both instances close with 4403.
            try await cluster.database.execute("UPDATE users SET is_active = false WHERE user_id = \(bob.id)")
            for socket in [roomSocket, stream] {
                let close = try await socket.closeEvent(timeout: .seconds(10))
                #expect(close.code == 4403, "\(close)")
            }
            // A token that expires while its socket is open ends it with 4401.
            let shortLived = try await TestToken.make(
                secret: Cluster.secret, userID: alice.id, name: alice.name, expiresIn: 3)
            let expiring = try await WebSocketTestClient.connect(
                port: cluster.a.port, path: "/chat/ws/\(room)?token=\(shortLived)")
            try await expiring.ready()
            let close = try await expiring.closeEvent(timeout: .seconds(20))
            #expect(close.code == 4401, "\(close)")
        }
    }

    @Test func oneUserCannotHoldMoreThanTheSocketCap() async throws {
        try await withCluster(1, environment: ["WS_MAX_SOCKETS_PER_USER": "3"]) { cluster in
            let (alice, bob) = (try await cluster.makeUser("alice"), try await cluster.makeUser("bob"))
            let room = try await cluster.makeGroup(alice, with: [bob])
            var open: [WebSocketTestClient] = []
            for index in 0..<3 {
                let socket = try await cluster.socket(cluster.a, room: index == 0 ? nil : room, as: alice)
                try await socket.ready()
                open.append(socket)
            }
            let extra = try await cluster.socket(cluster.a, room: room, as: alice)
            let close = try await extra.closeEvent(timeout: .seconds(10))
            #expect(close.code == 4429, "\(close)")
            // Others are not affected, and a freed slot can be used again.
            let bobs = try await cluster.socket(cluster.a, room: room, as: bob)
            try await bobs.ready()
            try await open.removeLast().close()
            var reopened: WebSocketTestClient?
            for _ in 0..<50 where reopened == nil {
                let socket = try await cluster.socket(cluster.a, room: room, as: alice)
                do {
                    try await socket.ready()
                    reopened = socket
                } catch {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(reopened != nil)
            for socket in open + [bobs] + (reopened.map { [$0] } ?? []) { try await socket.close() }
        }
    }

    /// Not only new messages: an edit, a delete or typing never reaches a participant whose
    /// removal was not heard (its notification lost), and that socket is closed.
    @Test func aSilentRemovalLeaksNoEditTypingOrRead() async throws {
        try await withCluster(1) { cluster in
            let (owner, erin) = (try await cluster.makeUser("owner"), try await cluster.makeUser("erin"))
            let room = try await cluster.makeGroup(owner, with: [erin])
            let http = cluster.http(cluster.a)
            let id = try await cluster.post("original", by: owner, room: room, via: http)
            let ownerSocket = try await cluster.socket(cluster.a, room: room, as: owner)
            try await ownerSocket.ready()
            let erinSocket = try await cluster.socket(cluster.a, room: room, as: erin)
            try await erinSocket.ready()
            try await cluster.removeSilently(erin, from: room)
            let edited = try await http.request(
                "PUT", "/chat/rooms/\(room)/messages/\(id)/", token: owner.token, json: ["message_content": "secret edit"])
            #expect(edited.status == 200)
            try await ownerSocket.send(text: #"{"type":"typing","is_typing":true}"#)
            let erinClose = try await erinSocket.closeCode {
                #expect(!$0.contains("secret edit"))
                #expect(!$0.contains("\"typing\""))
            }
            #expect(erinClose == 4403)
            try await ownerSocket.close()
            await http.close()
        }
    }

    /// A deactivation is not a change of the room: when its notification is lost, the hub's
    /// membership sweep (every REALTIME_POLL_SECONDS) still cuts the user off, with no other
    /// event of the room to prompt it.
    @Test func aSilentDeactivationIsCaughtByTheMembershipSweep() async throws {
        try await withCluster(1, environment: ["REALTIME_POLL_SECONDS": "1"]) { cluster in
            let (owner, frank) = (try await cluster.makeUser("owner"), try await cluster.makeUser("frank"))
            let room = try await cluster.makeGroup(owner, with: [frank])
            let frankSocket = try await cluster.socket(cluster.a, room: room, as: frank)
            try await frankSocket.ready()
            try await cluster.deactivateSilently(frank)
            let close = try await frankSocket.closeEvent(timeout: .seconds(20))
            #expect(close.code == 4403, "\(close)")
        }
    }

    @Test func onlineStatusComesFromTheDatabase() async throws {
        try await withCluster(2) { cluster in
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let onB = cluster.http(cluster.b)
            func status() async throws -> [Int64: JSONObject] {
                let response = try await onB.request("GET", "/chat/rooms/\(room)/online-status/", token: alice.token)
                #expect(response.status == 200)
                let entries = try #require(try response.json().arrayValue).compactMap(\.objectValue)
                return Dictionary(uniqueKeysWithValues: entries.map { ($0.int("user_id")!, $0) })
            }
            var entries = try await status()
            #expect(entries[alice.id]?.bool("is_online") == false && entries[alice.id]?.isNull("last_seen") == true)
            // A socket on instance A makes Alice online for instance B.
            let socket = try await cluster.socket(cluster.a, room: room, as: alice)
            try await socket.send(object: Frame(type: "ping"))
            _ = try await socket.next(type: "pong")
            entries = try await status()
            #expect(entries[alice.id]?.bool("is_online") == true && entries[alice.id]?.string("last_seen") != nil)
            #expect(entries[bob.id]?.bool("is_online") == false)
            try await socket.close()
            var offline = false
            for _ in 0..<50 where !offline {
                entries = try await status()
                offline = entries[alice.id]?.bool("is_online") == false
                if !offline { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(offline && entries[alice.id]?.string("last_seen") != nil)
            let notMember = try await cluster.makeUser()
            #expect(try await onB.request("GET", "/chat/rooms/\(room)/online-status/", token: notMember.token).status == 403)
            await onB.close()
        }
    }
}
