import ChatTestKit
import Foundation
import Testing

/// CORS_ALLOWED_ORIGINS: browser clients (a Flutter web build) on listed origins get their
/// preflights answered and may open sockets; other origins get no CORS headers and no sockets.
@Suite struct CORSTests {
    @Test func listedOriginsArePreflightedAndMayOpenSockets() async throws {
        let allowed = "https://app.example.com"
        try await withCluster(1, environment: ["CORS_ALLOWED_ORIGINS": "\(allowed), https://admin.example.com"]) { cluster in
            let user = try await cluster.makeUser()
            let http = cluster.http(cluster.a)
            let preflight = try await http.request(
                "OPTIONS", "/chat/rooms/",
                headers: [("Origin", allowed), ("Access-Control-Request-Method", "POST"),
                          ("Access-Control-Request-Headers", "authorization, content-type")])
            #expect(preflight.status == 204, "\(preflight)")
            #expect(preflight.header("Access-Control-Allow-Origin") == allowed)
            #expect(preflight.header("Access-Control-Allow-Methods")?.contains("POST") == true)
            #expect(preflight.header("Access-Control-Allow-Headers")?.lowercased().contains("authorization") == true)

            let stranger = try await http.request(
                "OPTIONS", "/chat/rooms/", headers: [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")])
            #expect(stranger.header("Access-Control-Allow-Origin") == nil, "\(stranger)")

            let list = try await http.request("GET", "/chat/rooms/", headers: [("Origin", allowed), ("Authorization", "Bearer \(user.token)")])
            #expect(list.status == 200)
            #expect(list.header("Access-Control-Allow-Origin") == allowed)
            // Errors carry the header too, so a web client can read their detail.
            let unauthorized = try await http.request("GET", "/chat/rooms/", headers: [("Origin", allowed)])
            #expect(unauthorized.status == 401)
            #expect(unauthorized.header("Access-Control-Allow-Origin") == allowed)
            await http.close()

            let room = try await cluster.makeGroup(user, with: [])
            let refused = try await WebSocketTestClient.connect(
                port: cluster.a.port, path: "/chat/ws/\(room)?token=\(user.token)", headers: [("Origin", "https://evil.example")])
            let close = try await refused.closeEvent(timeout: .seconds(20))
            #expect(close.code == 4403, "\(close)")
            for headers in [[("Origin", allowed)], []] {
                let socket = try await WebSocketTestClient.connect(
                    port: cluster.a.port, path: "/chat/ws/\(room)?token=\(user.token)", headers: headers)
                try await socket.send(object: RoomSocketTests.Frame(type: "ping"))
                #expect(try await socket.nextObject().type == "pong", "\(headers)")
                try await socket.close()
            }
        }
    }
}
