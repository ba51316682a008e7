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

    @Test func withATokenMetricsNeedIt() async throws {
        try await withCluster(1, environment: ["METRICS_TOKEN": "scrape-me"]) { cluster in
            let client = cluster.http(cluster.a)
            let refused = try await client.request("GET", "/metrics", token: nil)
            #expect(refused.status == 401)
            #expect(try refused.object().string("detail") != nil)
            #expect(try await client.request("GET", "/metrics", token: "wrong").status == 401)
            let allowed = try await client.request("GET", "/metrics", token: "scrape-me")
            #expect(allowed.status == 200 && allowed.text.contains("db_pool_open_connections"))
            await client.close()
        }
    }
}

/// Connections that send nothing cannot hold the server's descriptors forever.
@Suite struct ConnectionTimeoutTests {
    @Test func anIdleKeepAliveConnectionIsClosed() async throws {
        try await withCluster(1, environment: ["HTTP_IDLE_TIMEOUT_SECONDS": "1"]) { cluster in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            #expect(fd >= 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(cluster.a.port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            #expect(connected == 0)
            var timeout = timeval(tv_sec: 20, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            // One request on a keep-alive connection, then silence: the server closes it.
            let request = Array("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
            #expect(send(fd, request, request.count, 0) == request.count)
            var buffer = [UInt8](repeating: 0, count: 4096)
            var received: [UInt8] = []
            var read = 0
            repeat {
                read = recv(fd, &buffer, buffer.count, 0)
                if read > 0 { received += buffer.prefix(read) }
            } while read > 0
            #expect(String(decoding: received, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            #expect(read == 0, "recv returned \(read), errno \(errno): the connection was not closed")
        }
    }
}
