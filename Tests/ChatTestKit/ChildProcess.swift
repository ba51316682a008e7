import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure starting or running a child process; the description includes its log tail.
public struct ChildProcessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A `Process` whose output goes to a log file, with signal/wait helpers.
final class ChildProcess: Sendable {
    private struct State: @unchecked Sendable {
        // Process is only touched under the lock (and its own thread-safe accessors).
        var process: Process?
    }
    private let state = NIOLockedValueBox(State())

    /// Launches the executable; stdout and stderr are appended to `logFile`.
    func launch(
        executable: URL, arguments: [String], environment: [String: String]?, logFile: URL,
        workingDirectory: URL? = nil
    ) throws {
        try state.withLockedValue { state in
            if let process = state.process, process.isRunning {
                throw ChildProcessError("\(executable.path) is already running (pid \(process.processIdentifier))")
            }
            let manager = FileManager.default
            try manager.createDirectory(at: logFile.deletingLastPathComponent(), withIntermediateDirectories: true)
            if !manager.fileExists(atPath: logFile.path) {
                _ = manager.createFile(atPath: logFile.path, contents: nil)
            }
            let log = try FileHandle(forWritingTo: logFile)
            defer { try? log.close() }
            try log.seekToEnd()
            let banner = "=== \(Date()) starting \(executable.path) \(arguments.joined(separator: " ")) ===\n"
            try log.write(contentsOf: Data(banner.utf8))

            let process = Process()
            process.executableURL = executable
            process.arguments = arguments
            if let environment { process.environment = environment }
            if let workingDirectory { process.currentDirectoryURL = workingDirectory }
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = log
            process.standardError = log
            try process.run()
            state.process = process
        }
    }

    var pid: Int32 { state.withLockedValue { $0.process?.processIdentifier ?? 0 } }

    var isRunning: Bool { state.withLockedValue { $0.process?.isRunning ?? false } }

    /// The exit status (or terminating signal) once the process has exited.
    var exitDescription: String? {
        state.withLockedValue { state in
            guard let process = state.process, !process.isRunning else { return nil }
            switch process.terminationReason {
            case .exit: return "exited with status \(process.terminationStatus)"
            case .uncaughtSignal: return "killed by signal \(process.terminationStatus)"
            @unknown default: return "ended (status \(process.terminationStatus))"
            }
        }
    }

    /// Sends `signal` to the process (and to its process group if it leads one).
    func send(signal: Int32, toGroup: Bool = false) {
        state.withLockedValue { state in
            guard let process = state.process, process.isRunning else { return }
            let pid = process.processIdentifier
            if toGroup, getpgid(pid) == pid {
                _ = kill(-pid, signal)
            } else {
                _ = kill(pid, signal)
            }
        }
    }

    /// Waits until the process has exited (and been reaped); false on timeout.
    func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now >= deadline { return false }
            await uncancellableSleep(milliseconds: 20)
        }
        return true
    }

    /// SIGTERM (or `signal`), then SIGKILL after `grace`; waits for the exit.
    func stop(signal: Int32 = SIGTERM, grace: Duration, killGroup: Bool = false) async {
        guard isRunning else { return }
        send(signal: signal)
        if await waitForExit(timeout: grace) { return }
        send(signal: SIGKILL, toGroup: killGroup)
        _ = await waitForExit(timeout: .seconds(10))
    }

    /// Kills the process without waiting (for deinit).
    func killNow(signal: Int32 = SIGKILL) {
        send(signal: signal)
    }
}

/// The last `count` lines of a text file.
func tail(of file: URL, lines count: Int = 40) -> String {
    guard let data = FileManager.default.contents(atPath: file.path) else { return "(no log at \(file.path))" }
    let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
    return lines.suffix(count).joined(separator: "\n")
}

/// Sleeps even if the task is cancelled (cleanup must still wait for children).
func uncancellableSleep(milliseconds: Int) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { continuation.resume() }
    }
}
