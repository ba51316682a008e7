#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a command to completion without Foundation's `Process` (whose `waitUntilExit` can
/// miss a child's exit on Linux when the child forks a daemon, as `pg_ctl start` does):
/// posix_spawn, then `waitpid` polled between sleeps. Output goes to /dev/null. Returns
/// the exit status.
public func runCommand(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(120)) async throws
    -> Int32
{
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    guard spawned == 0 else { throw ChildProcessError("could not start \(executable): error \(spawned)") }
    let deadline = ContinuousClock.now + timeout
    while true {
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid {
            // WIFEXITED / WEXITSTATUS, spelled out (the macros are not imported).
            return status & 0x7f == 0 ? (status >> 8) & 0xff : -1
        }
        guard reaped == 0 else { throw ChildProcessError("waitpid failed for \(executable)") }
        guard ContinuousClock.now < deadline else {
            kill(pid, SIGKILL)
            throw ChildProcessError("\(executable) did not finish within \(timeout)")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}
