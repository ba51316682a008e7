import Hummingbird
import Postgres
import Prometheus

/// `/health`, `/ready`, `/metrics` and `/openapi.json`.
struct OperationsController {
    let postgres: PostgresClient
    let metrics: PrometheusCollectorRegistry

    struct Status: ResponseEncodable {
        var status: String
    }

    func addRoutes(to routes: Routes) {
        routes.on("health", .get) { _, _ in Status(status: "ok") }
        routes.on("ready", .get) { _, _ in
            do {
                try await postgres.execute("SELECT 1")
            } catch {
                throw APIError(.serviceUnavailable, "Database unavailable")
            }
            return Status(status: "ready")
        }
        routes.on("openapi.json", .get) { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        routes.on("metrics", .get) { _, _ in
            let stats = postgres.statistics
            for (name, help, value) in [
                ("open", "Open database connections", stats.open),
                ("idle", "Idle database connections", stats.idle),
                ("waiting", "Requests waiting for a database connection", stats.waiting),
            ] {
                metrics.makeGauge(
                    descriptor: MetricNameDescriptor(
                        namespace: "db", subsystem: "pool", metricName: name, unitName: "connections", helpText: help)
                ).set(Double(value))
            }
            var buffer: [UInt8] = []
            metrics.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }
}
