import ChatCore
import Foundation
import NIOConcurrencyHelpers
import Postgres
import Prometheus

/// Every metric family the server exports at `/metrics`, each with its HELP text and
/// Prometheus naming (`_total` counters, `_seconds` durations, base units), made once
/// per application from its registry.
public struct ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    // WebSockets and delivery.
    let slowClientCloses: Counter
    let droppedNotices: Counter
    let framesQueued: Counter
    let framesDropped: Counter
    let catchUpFrames: ValueHistogram
    let notifyBatchesSent: Counter
    let notifyBatchesReceived: Counter
    let listenerReconnects: Counter
    // Pool waits: counted from the pool's cumulative statistics at each scrape.
    let poolWaits: Counter
    let poolWaitSeconds: Counter
    private let poolWaitsSeen = NIOLockedValueBox((count: 0, time: Duration.zero))
    private let replicaReadsSeen = NIOLockedValueBox([ReplicaReads: Int]())
    private let requestSeries = NIOLockedValueBox([RequestSeries: (count: Counter, duration: DurationHistogram)]())
    let requestsInFlight: Gauge
    // Retention.
    let retentionDeletedMessages: Counter
    let retentionRuns: Counter

    static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]

    /// A family name given whole (with its `_total`/`_seconds`/`_bytes` suffix) and its HELP.
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        func counter(_ name: String, _ help: String) -> Counter {
            registry.makeCounter(descriptor: Self.descriptor(name, help))
        }
        slowClientCloses = counter(
            "chat_ws_slow_client_closes_total", "WebSockets closed with 4408 because the client read too slowly")
        droppedNotices = counter(
            "chat_notify_coalesced_total", "Change notices dropped because a newer one superseded them (reads, presence, typing)")
        retentionDeletedMessages = counter(
            "chat_retention_deleted_messages_total", "Messages deleted for good by the retention job")
        retentionRuns = counter("chat_retention_runs_total", "Retention job runs")
        framesQueued = counter("chat_ws_frames_queued_total", "Live event frames queued to sockets (each socket counts once)")
        framesDropped = counter(
            "chat_ws_frames_dropped_total", "Frames refused because a socket's outbound queue was full (it is then closed with 4408)")
        catchUpFrames = registry.makeValueHistogram(
            descriptor: Self.descriptor("chat_ws_catch_up_frames", "Frames a socket received catching up (last_seq or last_message_id)"),
            buckets: [0, 1, 10, 100, 1000, 10_000, 100_000])
        notifyBatchesSent = counter("chat_notify_batches_sent_total", "NOTIFY payloads this instance sent (each carries one or more changes)")
        notifyBatchesReceived = counter("chat_notify_batches_received_total", "NOTIFY payloads this instance's listener received")
        listenerReconnects = counter("chat_listener_reconnects_total", "Times the LISTEN connection was lost and opened again")
        poolWaits = counter("db_pool_waits_total", "Requests that had to wait for a database connection")
        poolWaitSeconds = counter("db_pool_wait_seconds_total", "Time requests spent waiting for a database connection, in seconds")
        requestsInFlight = registry.makeGauge(descriptor: Self.descriptor("http_requests_in_flight", "HTTP requests being answered"))
        // Families that only get label sets later still show their HELP from the start.
        _ = openSockets(kind: "room")
        _ = openSockets(kind: "user")
    }

    // MARK: HTTP

    /// The counter and histogram of one (method, route, status), made once: the registry's
    /// lookup by labels costs more than the increment.
    struct RequestSeries: Hashable {
        var method: String
        var route: String
        var status: Int
    }

    func requestFinished(method: String, route: String, status: Int, duration: Duration) {
        let key = RequestSeries(method: method, route: route, status: status)
        let series = requestSeries.withLockedValue { $0[key] } ?? makeRequestSeries(key)
        series.count.increment()
        series.duration.record(duration)
    }

    private func makeRequestSeries(_ key: RequestSeries) -> (count: Counter, duration: DurationHistogram) {
        let labels = [("method", key.method), ("route", key.route), ("status", String(key.status))]
        let series = (
            count: registry.makeCounter(
                descriptor: Self.descriptor("http_requests_total", "HTTP requests answered, by route template and status"),
                labels: labels),
            duration: registry.makeDurationHistogram(
                descriptor: Self.descriptor(
                    "http_request_duration_seconds", "Time from a request's head to its answer, by route template and status"),
                labels: labels, buckets: Self.durationBuckets)
        )
        requestSeries.withLockedValue { $0[key] = series }
        return series
    }

    // MARK: WebSockets

    func openSockets(kind: String) -> Gauge {
        registry.makeGauge(
            descriptor: Self.descriptor("chat_ws_open_sockets", "Open WebSockets, by kind (room or user stream)"),
            labels: [("kind", kind)])
    }

    // MARK: Refreshed at each scrape

    func setPool(open: Int, idle: Int, waiting: Int, waits: Int, waitTime: Duration) {
        let (newWaits, newTime) = poolWaitsSeen.withLockedValue { seen in
            defer { seen = (waits, waitTime) }
            return (waits - seen.count, waitTime - seen.time)
        }
        if newWaits > 0 { poolWaits.increment(by: Int64(newWaits)) }
        if newTime > .zero {
            poolWaitSeconds.increment(by: newTime.inSeconds)
        }
        for (name, help, value) in [
            ("db_pool_open_connections", "Open database connections", open),
            ("db_pool_idle_connections", "Idle database connections", idle),
            ("db_pool_waiting_requests", "Requests waiting for a database connection", waiting),
        ] {
            registry.makeGauge(descriptor: Self.descriptor(name, help)).set(Double(value))
        }
    }

    /// Read replicas: whether each is in use, how far behind, and where reads went.
    func setReplicas(_ replicas: PostgresReplicas) {
        let states = replicas.replicaStates
        var totals: [ReplicaReads: Int] = [.routedToPrimary: replicas.primaryReads, .recheckedOnPrimary: replicas.rechecks]
        for state in states {
            let labels = [("replica", state.name)]
            registry.makeGauge(
                descriptor: Self.descriptor(
                    "db_replica_up", "Whether reads may use the replica (answering, in recovery, within REPLICA_MAX_LAG_MS)"),
                labels: labels
            ).set(state.usable ? 1.0 : 0.0)
            registry.makeGauge(
                descriptor: Self.descriptor(
                    "db_replica_lag_seconds", "How far the replica's replay is behind the primary, in seconds (-1: unknown)"),
                labels: labels
            ).set(state.lag.map(\.inSeconds) ?? -1)
            totals[.served(replica: state.name)] = state.reads
            totals[.failed(replica: state.name)] = state.failedReads
        }
        let increments = replicaReadsSeen.withLockedValue { seen in
            defer { seen = totals }
            return totals.map { ($0.key, $0.value - (seen[$0.key] ?? 0)) }
        }
        for (kind, increment) in increments where increment > 0 {
            let (name, help, labels) = kind.metric
            registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels).increment(by: Int64(increment))
        }
    }

    /// The read counts `PostgresReplicas` keeps, as counters.
    enum ReplicaReads: Hashable {
        case routedToPrimary, recheckedOnPrimary
        case served(replica: String)
        case failed(replica: String)

        var metric: (name: String, help: String, labels: [(String, String)]) {
            let routed = (
                "db_replica_routed_reads_total",
                "Replica-eligible reads that ran on the primary: no replica had the reader's last write or was within REPLICA_MAX_LAG_MS (primary), or a replica's not-found was checked there (recheck)"
            )
            switch self {
            case .routedToPrimary: return (routed.0, routed.1, [("target", "primary")])
            case .recheckedOnPrimary: return (routed.0, routed.1, [("target", "recheck")])
            case .served(let replica): return ("db_replica_reads_total", "Reads a replica served", [("replica", replica)])
            case .failed(let replica):
                return ("db_replica_failed_reads_total", "Reads a replica failed, run again on the primary", [("replica", replica)])
            }
        }
    }

    /// Objects of WebSocket connections still alive: equal to the open sockets once
    /// upgrades end, unless something keeps closed connections alive.
    func setConnectionObjects(sessions: Int, upgradeContexts: Int) {
        registry.makeGauge(descriptor: Self.descriptor("chat_ws_sessions", "Socket sessions alive (open sockets unless one leaks)"))
            .set(Double(sessions))
        registry.makeGauge(
            descriptor: Self.descriptor("chat_ws_upgrade_contexts", "WebSocket upgrade requests being admitted (0 once answered, unless one leaks)")
        ).set(Double(upgradeContexts))
    }

    /// The standard process metrics, read from /proc (Linux).
    func setProcessMetrics() {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return }
        // Fields after the command name: state is field 3; utime 14, stime 15, starttime 22, rss 24.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        func gauge(_ name: String, _ help: String, _ value: Double?) {
            guard let value else { return }
            registry.makeGauge(descriptor: Self.descriptor(name, help)).set(value)
        }
        if let user = field(14), let system = field(15) {
            gauge("process_cpu_seconds_total", "User and system CPU time spent, in seconds", (user + system) / ticks)
        }
        gauge("process_resident_memory_bytes", "Resident memory size, in bytes", field(24).map { $0 * page })
        if let start = field(22), let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
            let sinceBoot = uptime.split(separator: " ").first.flatMap({ Double($0) })
        {
            let bootTime = Date().timeIntervalSince1970 - sinceBoot
            gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds", bootTime + start / ticks)
        }
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count).map(Double.init)
        gauge("process_open_fds", "Open file descriptors", descriptors)
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            gauge("process_max_fds", "Maximum number of open file descriptors", Double(limit.rlim_cur))
        }
    }
}
