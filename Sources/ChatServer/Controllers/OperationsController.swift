import Crypto
import Hummingbird
import NIOCore
import Postgres
import Prometheus

/// `/health`, `/ready`, `/metrics` and `/openapi.json`.
struct OperationsController {
    let postgres: PostgresClient
    let replicas: PostgresReplicas?
    let metrics: ServerMetrics
    /// With a token, `/metrics` needs `Authorization: Bearer <token>`; without one it is
    /// served to clients on this host only (`METRICS_TOKEN`).
    let metricsToken: String?

    /// Who may read `/metrics`.
    static func mayReadMetrics(token: String?, expected: String?, peer: SocketAddress?) -> Bool {
        if let expected {
            // Compared as digests: the time taken says nothing about the token.
            return token.map { SHA256.hash(data: Array($0.utf8)) == SHA256.hash(data: Array(expected.utf8)) } ?? false
        }
        guard let peer else { return true }  // not from the network (in-process tests)
        switch peer {
        case .v4(let address): return address.address.sin_addr.s_addr.bigEndian >> 24 == 127
        case .v6: return peer.ipAddress == "::1"
        case .unixDomainSocket: return true
        }
    }

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
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIResources.document)))
        }
        // The reference page: self-contained (inline script and style, no network but this
        // server's /openapi.json).
        routes.on("docs", .get) { _, _ in
            Response(
                status: .ok,
                headers: [
                    .contentType: "text/html; charset=utf-8",
                    .contentSecurityPolicy: "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
                ],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIResources.docsPage)))
        }
        routes.on("metrics", .get) { request, context in
            guard
                Self.mayReadMetrics(
                    token: AuthMiddleware.bearerToken(request), expected: metricsToken, peer: context.remoteAddress)
            else {
                throw metricsToken == nil
                    ? APIError(.forbidden, "Metrics are served to clients on this host only; set METRICS_TOKEN to scrape from elsewhere")
                    : APIError.unauthorized("Metrics need the METRICS_TOKEN as a bearer token")
            }
            let stats = postgres.statistics
            metrics.setPool(open: stats.open, idle: stats.idle, waiting: stats.waiting, waits: stats.waits, waitTime: stats.waitTime)
            if let replicas { metrics.setReplicas(replicas) }
            metrics.setProcessMetrics()
            metrics.setConnectionObjects(
                sessions: SocketSession.alive.withLockedValue { $0 },
                upgradeContexts: AdmissionSlot.alive.withLockedValue { $0 })
            var buffer: [UInt8] = []
            metrics.registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }
}
