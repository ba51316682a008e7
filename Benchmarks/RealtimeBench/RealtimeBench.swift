import ArgumentParser
import ChatTestKit
import Foundation
import Postgres

/// Measures the real-time path end to end against real `chat-server` processes on one
/// database, and prints Markdown. Every number comes with a reference measured in the same
/// run, so the ratios hold on a noisy machine. `scripts/bench-realtime.sh` runs it.
@main
struct RealtimeBench: AsyncParsableCommand {
    enum Section: String, ExpressibleByArgument, CaseIterable {
        case throughput, latency, fanout, idle
    }

    @Option(help: "Sections to run (default: all)") var only: [Section] = Section.allCases
    @Option(help: "chat-server binary") var server: String
    @Option(help: "Concurrent senders in the throughput section") var senders = 16
    @Option(help: "Seconds per throughput measurement") var seconds = 8.0
    @Option(help: "Messages in the latency section") var latencyMessages = 1000
    @Option(help: "Messages per second in the latency section") var rate = 100.0
    @Option(help: "Subscribers in the fan-out section") var subscribers = 1000
    @Option(help: "Messages in the fan-out section") var fanoutMessages = 100
    @Option(help: "Idle sockets in the memory section") var idleSockets = 10_000
    @Option(help: "NOTIFY_BATCH_WINDOW_MS of the notifying servers") var batchWindow = 0

    static let secret = "realtime-bench-secret-0123456789-0123456789-0123456789"

    func run() async throws {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"] else {
            throw ValidationError("DATABASE_URL is required")
        }
        setenv("CHAT_SERVER_BINARY", server, 1)
        let db = PostgresClient(configuration: PostgresConfiguration(url: url, applicationName: "realtime-bench", poolSize: 4))
        let logs = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("realtime-bench")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        func makeServer(_ name: String, _ extra: [String: String] = [:]) throws -> ServerProcess {
            var environment = [
                "DATABASE_URL": url, "JWT_SECRET": Self.secret, "MIGRATE_ON_START": "false", "LOG_LEVEL": "error",
                "UPLOAD_DIR": logs.appendingPathComponent("uploads").path, "RETENTION_INTERVAL_SECONDS": "0",
                "INSTANCE_ID": "bench-\(name)", "DB_POOL_SIZE": "20", "NOTIFY_BATCH_WINDOW_MS": "\(batchWindow)",
            ]
            environment.merge(extra) { _, new in new }
            return ServerProcess(name: name, port: try ServerProcess.freePort(), environment: environment, logDirectory: logs)
        }
        let a = try makeServer("a")
        let b = try makeServer("b")
        try await a.start()
        try await b.start()
        defer {
            Task {
                await a.terminate()
                await b.terminate()
            }
        }
        let kit = BenchKit(db: db)
        print("# Real-time benchmark (\(Date()))\n")
        if only.contains(.throughput) {
            let quiet = try makeServer("no-notify", ["ANNOUNCE_CHANGES": "false"])
            try await quiet.start()
            try await throughput(kit, notifying: a, quiet: quiet)
            await quiet.terminate()
        }
        if only.contains(.latency) { try await latency(kit, a: a, b: b) }
        if only.contains(.fanout) { try await fanout(kit, a: a, b: b) }
        if only.contains(.idle) { try await idle(kit, a: a) }
        await a.terminate()
        await b.terminate()
        await db.shutdown()
    }

    // MARK: Sections

    /// POST throughput with after-commit batched NOTIFY against the same sends with no
    /// NOTIFY at all (a server started with ANNOUNCE_CHANGES=false), alternated twice.
    func throughput(_ kit: BenchKit, notifying: ServerProcess, quiet: ServerProcess) async throws {
        let users = try await kit.users(senders, on: notifying)
        var rooms: [Int64] = []
        for user in users { rooms.append(try await kit.room(of: user, with: [], on: notifying)) }
        // Warm up both servers (connections, prepared statements) before measuring.
        for server in [notifying, quiet] {
            _ = try await kit.sendRate(users: users, rooms: rooms, server: server, seconds: 2)
        }
        var results: [String: [Double]] = [:]
        for round in 0..<2 {
            for (label, server) in [("notify", notifying), ("none", quiet)] {
                let rate = try await kit.sendRate(users: users, rooms: rooms, server: server, seconds: seconds)
                results[label, default: []].append(rate)
                FileHandle.standardError.write(Data("throughput round \(round) \(label): \(Int(rate))/s\n".utf8))
            }
        }
        let notify = results["notify"]!.reduce(0, +) / 2
        let none = results["none"]!.reduce(0, +) / 2
        print("## Send throughput (\(senders) concurrent REST senders, one room each, \(Int(seconds)) s × 2 each)\n")
        print("| design | messages/s | ratio |")
        print("|---|---:|---:|")
        print("| no NOTIFY (ANNOUNCE_CHANGES=false) | \(Int(none)) | 1.00 |")
        print("| after-commit batched NOTIFY | \(Int(notify)) | \(String(format: "%.2f", notify / none)) |\n")
    }

    /// POST on A → `message` frame on B, at a steady rate; beside it, the POST's own round
    /// trip and a bare NOTIFY → LISTEN round trip through PostgreSQL.
    func latency(_ kit: BenchKit, a: ServerProcess, b: ServerProcess) async throws {
        let (sender, reader) = (try await kit.user(on: a), try await kit.user(on: a))
        let room = try await kit.room(of: sender, with: [reader], on: a)
        let socket = try await WebSocketTestClient.connect(port: b.port, path: "/chat/ws/\(room)?token=\(reader.token)")
        try await socket.send(text: #"{"type":"ping"}"#)
        _ = try await socket.next(type: "pong")
        let sentAt = LockedDictionary()
        let receiver = Task {
            var delays: [Double] = []
            while delays.count < latencyMessages {
                let frame = try await socket.next(type: "message", timeout: .seconds(30))
                let now = ContinuousClock.now
                if let seq = frame.string("content").flatMap({ Int($0.dropFirst(4)) }), let start = sentAt.get(seq) {
                    delays.append(Double((now - start).components.attoseconds) / 1e15 + Double((now - start).components.seconds) * 1000)
                }
            }
            return delays
        }
        let client = HTTPTestClient(port: a.port)
        var posts: [Double] = []
        let interval = Duration.seconds(1 / rate)
        var next = ContinuousClock.now
        for seq in 0..<latencyMessages {
            try await Task.sleep(until: next)
            next += interval
            let start = ContinuousClock.now
            sentAt.set(seq, start)
            _ = try await kit.post("lat-\(seq)", by: sender, room: room, via: client)
            posts.append(milliseconds(ContinuousClock.now - start))
        }
        let delays = try await receiver.value
        let notify = try await kit.notifyRoundTrips(count: latencyMessages, rate: rate)
        print("## Latency (\(latencyMessages) messages at \(Int(rate))/s; POST on instance A, socket on instance B)\n")
        print("| path | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        print("| PostgreSQL NOTIFY → LISTEN (bare, same database) | \(fmt(percentile(notify, 50))) | \(fmt(percentile(notify, 99))) |")
        print("| POST /messages round trip on A | \(fmt(percentile(posts, 50))) | \(fmt(percentile(posts, 99))) |")
        print("| POST start on A → frame on B | \(fmt(percentile(delays, 50))) | \(fmt(percentile(delays, 99))) |\n")
        try await socket.close()
        await client.close()
    }

    /// One room, `subscribers` sockets split over A and B; `fanoutMessages` sent on A as
    /// fast as one sender can. Every socket must get every message, in order.
    func fanout(_ kit: BenchKit, a: ServerProcess, b: ServerProcess) async throws {
        let sender = try await kit.user(on: a)
        let readers = try await kit.users(subscribers, on: a)
        let room = try await kit.room(of: sender, with: readers, on: a)
        var sockets: [WebSocketTestClient] = []
        for (index, reader) in readers.enumerated() {
            let server = index.isMultiple(of: 2) ? a : b
            sockets.append(try await WebSocketTestClient.connect(port: server.port, path: "/chat/ws/\(room)?token=\(reader.token)"))
        }
        for socket in sockets {
            try await socket.send(text: #"{"type":"ping"}"#)
            _ = try await socket.next(type: "pong")
        }
        let start = ContinuousClock.now
        let expected = fanoutMessages
        let allSockets = sockets
        let readers_ = Task {
            try await withThrowingTaskGroup(of: (Bool, ContinuousClock.Instant).self) { group in
                for socket in allSockets {
                    group.addTask {
                        var ids: [Int64] = []
                        while ids.count < expected {
                            ids.append(try await socket.next(type: "message", timeout: .seconds(120)).int("message_id") ?? 0)
                        }
                        return (ids == ids.sorted() && Set(ids).count == ids.count, ContinuousClock.now)
                    }
                }
                var ordered = true
                var last = start
                for try await (ok, at) in group {
                    ordered = ordered && ok
                    last = max(last, at)
                }
                return (ordered, last)
            }
        }
        let client = HTTPTestClient(port: a.port)
        for seq in 0..<fanoutMessages { _ = try await kit.post("fan-\(seq)", by: sender, room: room, via: client) }
        let sendDone = ContinuousClock.now
        let (ordered, last) = try await readers_.value
        let elapsed = last - start
        let deliveries = subscribers * fanoutMessages
        print("## Fan-out (one room, \(subscribers) subscribers over two instances, \(fanoutMessages) messages)\n")
        print("| measure | value |")
        print("|---|---:|")
        print("| all delivered, each socket in order, no duplicate | \(ordered ? "yes" : "NO") |")
        print("| sending took (one sequential REST sender) | \(fmt(milliseconds(sendDone - start))) ms |")
        print("| last delivery after the first send | \(fmt(milliseconds(elapsed))) ms |")
        print("| deliveries per second | \(Int(Double(deliveries) / (milliseconds(elapsed) / 1000))) |\n")
        for socket in sockets { socket.abort() }
        await client.close()
    }

    /// Resident memory of instance A before and after opening `idleSockets` authenticated
    /// room sockets (answered a ping each), per socket.
    func idle(_ kit: BenchKit, a: ServerProcess) async throws {
        let owner = try await kit.user(on: a)
        let members = try await kit.users(max(1, idleSockets / 10), on: a)
        let room = try await kit.room(of: owner, with: members, on: a)
        try await Task.sleep(for: .seconds(1))
        let before = try residentKiB(pid: a.pid)
        var sockets: [WebSocketTestClient] = []
        sockets.reserveCapacity(idleSockets)
        for index in 0..<idleSockets {
            let member = members[index % members.count]
            let socket = try await WebSocketTestClient.connect(port: a.port, path: "/chat/ws/\(room)?token=\(member.token)")
            sockets.append(socket)
        }
        for socket in sockets {
            try await socket.send(text: #"{"type":"ping"}"#)
            _ = try await socket.next(type: "pong", timeout: .seconds(60))
        }
        try await Task.sleep(for: .seconds(2))
        let after = try residentKiB(pid: a.pid)
        print("## Memory per idle socket (\(idleSockets) authenticated room sockets on one instance)\n")
        print("| measure | value |")
        print("|---|---:|")
        print("| server RSS before | \(before / 1024) MiB |")
        print("| server RSS with the sockets open | \(after / 1024) MiB |")
        print("| per socket | \(String(format: "%.1f", Double(after - before) / Double(idleSockets))) KiB |\n")
        for socket in sockets { socket.abort() }
    }

    func residentKiB(pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p / 100).rounded(.up)) - 1)]
}

func fmt(_ value: Double) -> String { String(format: "%.1f", value) }

final class LockedDictionary: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: ContinuousClock.Instant] = [:]
    func set(_ key: Int, _ value: ContinuousClock.Instant) { lock.withLock { values[key] = value } }
    func get(_ key: Int) -> ContinuousClock.Instant? { lock.withLock { values[key] } }
}
