import ChatTestKit
import Foundation
import Testing

/// Token-bucket rate limits against a real server (README, "Limits").
@Suite(.serialized) struct RateLimitTests {
    struct Credentials: Encodable {
        var user_name: String
        var password: String
    }

    @Test func failedLoginsAreLimitedPerNameAndPerAddress() async throws {
        try await withCluster(
            1,
            environment: [
                "BCRYPT_COST": "4", "RATE_LIMIT_LOGIN_FAILURES_PER_MINUTE": "3",
                "RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE": "6",
            ]
        ) { cluster in
            let http = cluster.http(cluster.a)
            defer { Task { await http.close() } }
            let name = "limited\(Int.random(in: 0..<1_000_000))"
            #expect(
                try await http.request("POST", "/auth/register", token: nil, json: Credentials(user_name: name, password: "correct horse"))
                    .status == 201)
            for _ in 0..<3 {
                let wrong = try await http.request(
                    "POST", "/auth/login", token: nil, json: Credentials(user_name: name, password: "wrong password"))
                #expect(wrong.status == 401)
            }
            // The fourth guess is refused before it is checked, even with the right password.
            for password in ["wrong password", "correct horse"] {
                let limited = try await http.request(
                    "POST", "/auth/login", token: nil, json: Credentials(user_name: name.uppercased(), password: password))
                #expect(limited.status == 429, "\(limited)")
                #expect(try limited.object().string("detail")?.isEmpty == false)
                #expect(Int(limited.header("Retry-After") ?? "") ?? 0 >= 1)
            }
            // Other names from the same address: three more failures use up the address's budget.
            for i in 0..<3 {
                let other = try await http.request(
                    "POST", "/auth/login", token: nil, json: Credentials(user_name: "\(name)-\(i)", password: "x"))
                #expect(other.status == 401)
            }
            let byAddress = try await http.request(
                "POST", "/auth/login", token: nil, json: Credentials(user_name: "\(name)-new", password: "x"))
            #expect(byAddress.status == 429)
            // Successful logins of other users are not counted (the bench logs in thousands).
            let fresh = "fresh\(Int.random(in: 0..<1_000_000))"
            _ = try await http.request("POST", "/auth/register", token: nil, json: Credentials(user_name: fresh, password: "password one"))
            for _ in 0..<3 {
                _ = try await http.request("POST", "/auth/login", token: nil, json: Credentials(user_name: fresh, password: "password one"))
            }
        }
    }

    @Test func sendsOverTheUsersRateGet429AndErrorFrames() async throws {
        try await withCluster(1, environment: ["RATE_LIMIT_SENDS_PER_SECOND": "1", "RATE_LIMIT_SEND_BURST": "3"]) { cluster in
            let alice = try await cluster.makeUser()
            let room = try await cluster.makeGroup(alice, with: [])
            let http = cluster.http(cluster.a)
            defer { Task { await http.close() } }
            struct Body: Encodable { var message_content: String }
            var statuses: [Int] = []
            for i in 0..<6 {
                let response = try await http.request(
                    "POST", "/chat/rooms/\(room)/messages/", token: alice.token, json: Body(message_content: "m\(i)"))
                statuses.append(response.status)
                if response.status == 429 { #expect(Int(response.header("Retry-After") ?? "") ?? 0 >= 1) }
            }
            #expect(statuses.filter { $0 == 201 }.count >= 3 && statuses.contains(429), "\(statuses)")
            // The socket shares the user's budget: a message frame over it gets an error frame.
            let socket = try await cluster.socket(cluster.a, room: room, as: alice)
            try await socket.ready()
            var sawError = false
            for i in 0..<6 where !sawError {
                try await socket.send(text: #"{"type":"message","content":"ws \#(i)","client_message_id":"c\#(i)"}"#)
                while true {
                    let frame = try await socket.nextObject()
                    if frame.string("type") == "error" {
                        #expect(frame.string("client_message_id") == "c\(i)")
                        sawError = true
                        break
                    }
                    if frame.string("type") == "message", frame.string("client_message_id") == "c\(i)" { break }
                }
            }
            #expect(sawError)
            try await socket.close()
        }
    }

    @Test func typingFloodsAreDroppedAndOtherFramesLimited() async throws {
        try await withCluster(1, environment: ["WS_TYPING_PER_SECOND": "1", "WS_FRAMES_PER_SECOND": "5"]) { cluster in
            let (alice, bob) = (try await cluster.makeUser(), try await cluster.makeUser())
            let room = try await cluster.makeGroup(alice, with: [bob])
            let reader = try await cluster.socket(cluster.a, room: room, as: bob)
            try await reader.ready()
            let flooder = try await cluster.socket(cluster.a, room: room, as: alice)
            try await flooder.ready()
            let start = ContinuousClock.now
            for i in 0..<300 { try await flooder.send(text: #"{"type":"typing","is_typing":\#(i % 2 == 0)}"#) }
            let id = try await cluster.post("after the flood", by: alice, room: room, via: cluster.http(cluster.a))
            var typing = 0
            while true {
                let frame = try await reader.nextObject(timeout: .seconds(30))
                if frame.string("type") == "typing" { typing += 1 }
                if frame.string("type") == "message" {
                    #expect(frame.int("message_id") == id)
                    break
                }
            }
            let seconds = (ContinuousClock.now - start) / .seconds(1)
            // A burst of 5, then 1 per second (the bound uses the measured time, not a deadline).
            #expect(typing >= 1 && Double(typing) <= 5 + seconds + 1, "\(typing) typing frames in \(seconds) s")
            // Pings past the budget: answered up to it, then one error frame, and the socket stays open.
            let pingStart = ContinuousClock.now
            for _ in 0..<60 { try await flooder.send(text: #"{"type":"ping"}"#) }
            var pongs = 0
            var errors = 0
            while pongs + errors < 60 {
                guard let frame = try? await flooder.nextObject(timeout: .seconds(2)) else { break }
                if frame.string("type") == "pong" { pongs += 1 }
                if frame.string("type") == "error" { errors += 1 }
            }
            let pingSeconds = (ContinuousClock.now - pingStart) / .seconds(1)
            #expect(pongs >= 5 && Double(pongs) <= 10 + 5 * pingSeconds + 1, "\(pongs) pongs")
            #expect(errors >= 1 && errors < 60 - pongs, "one error per limited streak, not one per frame: \(errors)")
            try await Task.sleep(for: .seconds(1))
            try await flooder.ready()  // the budget refilled, the socket is open
            try await flooder.close()
            try await reader.close()
        }
    }
}
