import ChatTestKit
import Foundation
import Testing

/// `/metrics` of a real server process (metrics are bootstrapped by the executable).
@Suite struct MetricsTests {
    @Test func errorsAreCountedWithTheStatusTheyWereAnsweredWith() async throws {
        try await withCluster(1) { cluster in
            let user = try await cluster.makeUser()
            let client = cluster.http(cluster.a)
            #expect(try await client.request("GET", "/chat/rooms/9000000000000/", token: user.token).status == 404)
            #expect(try await client.request("GET", "/chat/rooms/abc/", token: user.token).status == 422)
            #expect(try await client.request("GET", "/chat/rooms/", token: "bad").status == 401)
            let metrics = try await client.request("GET", "/metrics", token: nil).text
            let requests = metrics.split(separator: "\n").filter { $0.hasPrefix("hb_request") && $0.contains("rooms") }
            for status in ["404", "422", "401"] {
                #expect(requests.contains { $0.contains("\"\(status)\"") }, "\(status) in \(requests)")
            }
            #expect(!requests.contains { $0.contains("\"500\"") }, "\(requests)")
            await client.close()
        }
    }
}
