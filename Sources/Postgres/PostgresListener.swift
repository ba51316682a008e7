import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// One LISTEN connection for a set of channels, kept alive for the life of a service.
///
/// Events arrive on `events`. After every (re)connection and `LISTEN`, `.listening` comes
/// first: notifications sent while the connection was down are lost, so a consumer treats
/// notifications as hints and catches up from its tables whenever it sees `.listening`.
/// A broken connection (server restart, `pg_terminate_backend`) is replaced with
/// exponential back-off. Channel names are quoted as identifiers, never spliced raw.
public final class PostgresListener: Service, Sendable {
    public enum Event: Sendable {
        /// LISTEN is in place on a new connection (`backendPID` identifies it).
        case listening(backendPID: Int32)
        case notification(PostgresConnection.Notification)
    }

    public let channels: [String]
    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let client: PostgresClient
    private let logger: Logger
    private let state = NIOLockedValueBox<(stopped: Bool, connection: PostgresConnection?)>((false, nil))

    public init(client: PostgresClient, channels: [String], logger: Logger) {
        self.client = client
        self.channels = channels
        self.logger = logger
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await self.listenUntilStopped()
            } onCancel: {
                self.stop()
            }
        } onGracefulShutdown: {
            self.stop()
        }
        continuation.finish()
    }

    /// Ends `run()`; the event stream finishes.
    public func stop() {
        let connection = state.withLockedValue { state in
            state.stopped = true
            return state.connection
        }
        connection?.interruptWait()
    }

    private var isStopped: Bool { state.withLockedValue { $0.stopped } }

    private func listenUntilStopped() async {
        var delay = Duration.milliseconds(100)
        while !isStopped {
            do {
                let connection = try await client.openDedicatedConnection()
                state.withLockedValue { $0.connection = connection }
                for channel in channels {
                    try await connection.simpleQuery("LISTEN \(Self.quoteIdentifier(channel))")
                }
                logger.debug("postgres listening", metadata: ["db.channels": "\(channels)"])
                continuation.yield(.listening(backendPID: connection.backendPID))
                delay = .milliseconds(100)
                while !isStopped {
                    for notification in try await connection.waitForNotifications() {
                        continuation.yield(.notification(notification))
                    }
                }
                _ = try? await connection.simpleQuery("UNLISTEN *")
            } catch {
                if isStopped { break }
                logger.warning(
                    "postgres listener connection lost, reconnecting",
                    metadata: ["error": "\(String(reflecting: error))", "db.retry_in": "\(delay)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
            state.withLockedValue { $0.connection = nil }
        }
    }

    /// `"name"` with embedded quotes doubled: a safe SQL identifier for any channel name.
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

extension PostgresClient {
    /// Sends a notification (`pg_notify`) on a pooled connection, outside any transaction.
    public func notify(channel: String, payload: String) async throws {
        try await execute("SELECT pg_notify(\(channel), \(payload))")
    }
}
