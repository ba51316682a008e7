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
            let requests = metrics.split(separator: "\n").filter { $0.hasPrefix("http_requests_total{") && $0.contains("rooms") }
            for status in ["404", "422", "401"] {
                #expect(requests.contains { $0.contains("\"\(status)\"") }, "\(status) in \(requests)")
            }
            #expect(!requests.contains { $0.contains("\"500\"") }, "\(requests)")
            #expect(requests.contains { $0.contains("route=\"/chat/rooms/{room_id}\"") }, "route templates, not paths: \(requests)")

            // Prometheus naming: every family has HELP, counters end in _total, durations in _seconds.
            let lines = metrics.split(separator: "\n")
            let types = lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ") }
            let helped = Set(lines.filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] })
            #expect(types.count >= 15)
            for type in types {
                #expect(helped.contains(type[2]), "\(type[2]) has no HELP")
                if type[3] == "counter" { #expect(type[2].hasSuffix("_total"), "\(type[2])") }
                if type[3] == "histogram" {
                    #expect(["_seconds", "_bytes", "_frames"].contains { type[2].hasSuffix($0) }, "\(type[2]) has no unit suffix")
                }
            }
            for family in ["http_request_duration_seconds_bucket", "process_cpu_seconds_total", "process_resident_memory_bytes",
                "process_open_fds", "chat_ws_open_sockets", "db_pool_waiting_requests", "db_pool_waits_total",
                "db_pool_wait_seconds_total", "chat_ws_frames_queued_total", "chat_ws_frames_dropped_total",
                "chat_ws_catch_up_frames_bucket", "chat_notify_batches_sent_total", "chat_notify_batches_received_total",
                "chat_listener_reconnects_total"]
            {
                #expect(metrics.contains(family), "\(family) missing")
            }
            await client.close()
        }
    }

    /// Each request gets an id (the client's X-Request-ID, else a new one), returned in
    /// X-Request-ID and on its access log line, which LOG_FORMAT=json writes as JSON.
    @Test func requestsAreLoggedOnceWithTheirID() async throws {
        try await withCluster(1, environment: ["LOG_FORMAT": "json", "LOG_LEVEL": "info"]) { cluster in
            let user = try await cluster.makeUser()
            let client = cluster.http(cluster.a)
            let id = "trace-\(UInt32.random(in: 0...UInt32.max))"
            let answered = try await client.request(
                "GET", "/chat/rooms/9000000000000/", headers: [("Authorization", "Bearer \(user.token)"), ("X-Request-ID", id)])
            #expect(answered.status == 404)
            #expect(answered.header("X-Request-ID") == id)
            let generated = try await client.request("GET", "/health", headers: [("X-Request-ID", "bad id with spaces")])
            let other = try #require(generated.header("X-Request-ID"))
            #expect(other != "bad id with spaces" && !other.isEmpty)
            await client.close()

            var line: [String: Any]?
            for _ in 0..<50 where line == nil {
                let log = (try? String(contentsOf: cluster.a.logFile, encoding: .utf8)) ?? ""
                line = log.split(separator: "\n").lazy
                    .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                    .first { $0["hb.request.id"] as? String == id && $0["message"] as? String == "request" }
                if line == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let entry = try #require(line, "no JSON access log line with request id \(id)")
            #expect(entry["level"] as? String == "info")
            #expect(entry["http.method"] as? String == "GET")
            #expect(entry["http.route"] as? String == "/chat/rooms/{room_id}")
            #expect(entry["http.status"] as? String == "404")
            #expect(entry["chat.user_id"] as? String == String(user.id))
            #expect(entry["http.duration_ms"] != nil && entry["time"] != nil)
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

/// Connections that send nothing, too little or garbage cannot hold the server's descriptors
/// forever, and every request that arrives gets an answer.
@Suite struct ConnectionTimeoutTests {
    /// Sends `bytes` on a new connection (after `pause`, the second part), then reads until the
    /// server closes it or 20 s pass: what came back, and whether the server closed.
    static func exchange(port: Int, _ parts: [[UInt8]], pause: Duration = .zero) async throws -> (String, closed: Bool) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        #expect(connected == 0)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        for (index, part) in parts.enumerated() {
            if index > 0 { try await Task.sleep(for: pause) }
            _ = send(fd, part, part.count, Int32(MSG_NOSIGNAL))
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var received: [UInt8] = []
        var read = 0
        repeat {
            read = recv(fd, &buffer, buffer.count, 0)
            if read > 0 { received += buffer.prefix(read) }
        } while read > 0
        return (String(decoding: received, as: UTF8.self), read == 0)
    }

    @Test func anIdleKeepAliveConnectionIsClosed() async throws {
        try await withCluster(1, environment: ["HTTP_IDLE_TIMEOUT_SECONDS": "1"]) { cluster in
            // One request on a keep-alive connection, then silence: the server closes it.
            let (answer, closed) = try await Self.exchange(
                port: cluster.a.port, [Array("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)])
            #expect(answer.hasPrefix("HTTP/1.1 200"))
            #expect(closed, "the connection was not closed")
        }
    }

    @Test func aConnectionThatStopsSendingMidRequestIsClosed() async throws {
        try await withCluster(1, environment: ["HTTP_IDLE_TIMEOUT_SECONDS": "1"]) { cluster in
            for start in ["", "GET /hea", "GET /health HTTP/1.1\r\nHost: local"] {
                let (answer, closed) = try await Self.exchange(port: cluster.a.port, [Array(start.utf8)])
                #expect(answer.isEmpty && closed, "\(start.debugDescription): \(answer.debugDescription)")
            }
            // A body that stops arriving, on the first request and on a keep-alive one.
            for start in [
                "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"user",
                "GET /health HTTP/1.1\r\nHost: x\r\n\r\nPOST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
            ] {
                let (answer, closed) = try await Self.exchange(port: cluster.a.port, [Array(start.utf8)])
                #expect(closed && !answer.contains("HTTP/1.1 4") && !answer.contains("HTTP/1.1 5"), "\(start.debugDescription): \(answer)")
            }
        }
    }

    @Test func malformedRequestsAre400AndClosed() async throws {
        try await withCluster(1) { cluster in
            for request in [
                "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "GET /health HTTP/1.1\nHost: x\n\n",
                "\u{16}\u{3}\u{1}\u{2}\u{0}\u{1}\u{0}\u{1}\u{fc}\u{3}\u{3}",  // a TLS ClientHello on the plain port
            ] {
                let (answer, closed) = try await Self.exchange(port: cluster.a.port, [Array(request.utf8)])
                #expect(answer.hasPrefix("HTTP/1.1 400") && answer.contains(#""detail""#), "\(request.debugDescription): \(answer)")
                #expect(closed, "\(request.debugDescription) left the connection open")
            }
        }
    }

    @Test func rawUTF8InTheRequestTargetIsAnswered() async throws {
        try await withCluster(1) { cluster in
            let user = try await cluster.makeUser()
            let request = "GET /chat/search/?query=안녕하세요 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(user.token)\r\nConnection: close\r\n\r\n"
            let (answer, closed) = try await Self.exchange(port: cluster.a.port, [Array(request.utf8)])
            #expect(answer.hasPrefix("HTTP/1.1 "), "no answer: \(answer.debugDescription)")
            #expect(closed)
        }
    }

    @Test func chunkedBodiesOverTheLimitAre413AndBadChunksAre400() async throws {
        try await withCluster(1) { cluster in
            let user = try await cluster.makeUser()
            let head = "POST /chat/rooms/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(user.token)\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            let chunk = String(repeating: " ", count: 64 * 1024)
            let oversized = head + String(repeating: "10000\r\n\(chunk)\r\n", count: 17) + "0\r\n\r\n"
            let (tooLarge, _) = try await Self.exchange(port: cluster.a.port, [Array(oversized.utf8)])
            #expect(tooLarge.hasPrefix("HTTP/1.1 413") && tooLarge.contains(#""detail""#), "\(tooLarge)")
            let (badChunk, closed) = try await Self.exchange(port: cluster.a.port, [Array((head + "zz\r\n{}\r\n0\r\n\r\n").utf8)])
            #expect(badChunk.hasPrefix("HTTP/1.1 400") && badChunk.contains(#""detail""#), "\(badChunk)")
            #expect(closed)
        }
    }
}
