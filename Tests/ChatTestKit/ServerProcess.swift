import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A `chat-server serve` child process listening on `port`.
public final class ServerProcess: Sendable {
    public let name: String
    public let port: Int
    public let environment: [String: String]
    /// Where stdout and stderr go (appended across restarts).
    public let logFile: URL
    /// The child's working directory (nil: this process's).
    public let workingDirectory: URL?
    private let child = ChildProcess()

    /// - Parameters:
    ///   - environment: merged over the current process environment; `PORT` is set to `port`.
    ///   - logDirectory: output goes to `<logDirectory>/<name>.log`.
    public init(
        name: String, port: Int, environment: [String: String], logDirectory: URL, workingDirectory: URL? = nil
    ) {
        self.name = name
        self.workingDirectory = workingDirectory
        self.port = port
        self.environment = environment
        self.logFile = logDirectory.appendingPathComponent("\(name).log")
    }

    deinit {
        child.killNow()
    }

    /// The process id (0 before `start()`).
    public var pid: Int32 { child.pid }

    public var isRunning: Bool { child.isRunning }

    /// The last lines of the log file.
    public func logTail(lines: Int = 40) -> String { tail(of: logFile, lines: lines) }

    /// The `chat-server` binary: `$CHAT_SERVER_BINARY`, else next to the running test bundle or
    /// executable, else `.build/debug/chat-server` under the current directory.
    public static func executableURL() throws -> URL {
        let manager = FileManager.default
        if let path = ProcessInfo.processInfo.environment["CHAT_SERVER_BINARY"], !path.isEmpty {
            guard manager.isExecutableFile(atPath: path) else {
                throw ChildProcessError("CHAT_SERVER_BINARY=\(path) is not an executable file")
            }
            return URL(fileURLWithPath: path)
        }
        let cwd = URL(fileURLWithPath: manager.currentDirectoryPath, isDirectory: true)
        var directories: [URL] = []
        if let argument = CommandLine.arguments.first, !argument.isEmpty {
            let url = URL(fileURLWithPath: argument, relativeTo: cwd).standardizedFileURL
            directories.append(url.deletingLastPathComponent())
            directories.append(url.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        if let url = Bundle.main.executableURL {
            directories.append(url.deletingLastPathComponent())
        }
        directories.append(cwd.appendingPathComponent(".build/debug", isDirectory: true))
        var tried: [String] = []
        for directory in directories {
            let candidate = directory.appendingPathComponent("chat-server").standardizedFileURL
            guard !tried.contains(candidate.path) else { continue }
            tried.append(candidate.path)
            var isDirectory: ObjCBool = false
            if manager.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
                manager.isExecutableFile(atPath: candidate.path)
            {
                return candidate
            }
        }
        throw ChildProcessError(
            "chat-server binary not found (build it with `swift build --product chat-server` or set "
                + "CHAT_SERVER_BINARY); tried: \(tried.joined(separator: ", "))")
    }

    /// Launches `chat-server serve` and waits until `GET /health` answers 200.
    /// Throws (with the log tail) if the process exits first or `timeout` passes (the process is then killed).
    public func start(timeout: Duration = .seconds(60)) async throws {
        let executable = try Self.executableURL()
        var environment = ProcessInfo.processInfo.environment
        environment.merge(self.environment) { _, new in new }
        environment["PORT"] = String(port)
        try child.launch(
            executable: executable, arguments: ["serve"], environment: environment, logFile: logFile,
            workingDirectory: workingDirectory)

        let client = HTTPTestClient(port: port, requestTimeout: .seconds(2))
        let deadline = ContinuousClock.now + timeout
        var lastAnswer = "no answer yet"
        while true {
            if let exit = child.exitDescription {
                await client.close()
                throw ChildProcessError(
                    "server \(name) \(exit) before becoming healthy; last lines of \(logFile.path):\n\(logTail())")
            }
            do {
                let response = try await client.request("GET", "/health")
                if response.status == 200 {
                    await client.close()
                    return
                }
                lastAnswer = response.description
            } catch {
                lastAnswer = "\(error)"
            }
            if ContinuousClock.now >= deadline {
                await client.close()
                await kill()
                throw ChildProcessError(
                    "server \(name) not healthy on port \(port) after \(timeout) (\(lastAnswer)); "
                        + "last lines of \(logFile.path):\n\(logTail())")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// SIGTERM, then SIGKILL after 10 s; returns once the process has been reaped.
    public func terminate() async {
        await child.stop(signal: SIGTERM, grace: .seconds(10))
    }

    /// SIGKILL; returns once the process has been reaped.
    public func kill() async {
        await child.stop(signal: SIGKILL, grace: .seconds(10))
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago, taken from below the kernel's ephemeral
    /// range: a port the kernel hands out (bind to 0) is the kind it also gives the test's own
    /// outgoing connections as source ports, so between this call and the server's bind one of
    /// them could take it ("Address already in use"). Ports are handed out in turn from a random
    /// start, so two test processes rarely try the same one, and each is checked with a bind.
    public static func freePort() throws -> Int {
        try PortPicker.shared.next()
    }
}

/// Hands out ports below the ephemeral range, each one checked free by binding it.
final class PortPicker: Sendable {
    static let shared = PortPicker()

    private let range: Range<Int>
    private let cursor: NIOLockedValueBox<Int>

    init() {
        let low = Self.ephemeralLow() ?? 32768
        range = 10000..<max(10001, min(low, 65536))
        cursor = NIOLockedValueBox(Int.random(in: range))
    }

    func next() throws -> Int {
        for _ in 0..<range.count {
            let port = cursor.withLockedValue { value in
                let port = value
                value = port + 1 >= range.upperBound ? range.lowerBound : port + 1
                return port
            }
            if try Self.isFree(port) { return port }
        }
        throw ChildProcessError("no free TCP port in \(range)")
    }

    /// The first port of `/proc/sys/net/ipv4/ip_local_port_range` (nil where there is none).
    private static func ephemeralLow() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        else { return nil }
        return text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) }
    }

    private static func isFree(_ port: Int) throws -> Bool {
        #if canImport(Darwin)
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #else
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #endif
        guard fd >= 0 else { throw ChildProcessError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return bound == 0
    }
}
