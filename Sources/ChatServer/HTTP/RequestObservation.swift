import ChatCore
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers

/// The outermost middleware: gives each request its id (the client's `X-Request-ID` when
/// it is a sane one, else Hummingbird's), returns it in `X-Request-ID`, and when the answer
/// has been written counts and times it by route template and status and writes one
/// access log line at info (`AccessLog`: method, route, path, status, duration, request id,
/// user id; never the query string, which may hold a token).
struct RequestObservationMiddleware: RouterMiddleware {
    typealias Context = ChatRequestContext

    let metrics: ServerMetrics
    /// Nil when `ACCESS_LOG` is off (or the log level is above info).
    let accessLog: AccessLog?

    static let requestIDHeader = HTTPField.Name("X-Request-ID")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var context = context
        if let id = request.headers[Self.requestIDHeader], Self.isUsableRequestID(id) {
            context.logger[metadataKey: "hb.request.id"] = "\(id)"
        }
        let inFlight = metrics.requestsInFlight
        inFlight.increment()
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            // Only what the error middleware (inside this one) lets through: count it as 500.
            inFlight.decrement()
            finished(request, context: context, status: 500, start: start)
            throw error
        }
        response.headers[Self.requestIDHeader] = context.id
        let status = response.status.code
        // Counted once the body is written (a large download takes its time), as
        // Hummingbird's own MetricsMiddleware does with its package-only withPostWriteClosure.
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { [context] writer in
            defer {
                inFlight.decrement()
                finished(request, context: context, status: status, start: start)
            }
            try await body.write(writer)
        }
        return response
    }

    private func finished(_ request: Request, context: Context, status: Int, start: ContinuousClock.Instant) {
        let duration = ContinuousClock.now - start
        let route = context.endpointPath ?? "unmatched"
        metrics.requestFinished(method: request.method.rawValue, route: route, status: status, duration: duration)
        guard let accessLog else { return }
        accessLog.record(
            .init(
                method: request.method.rawValue, route: route, path: request.uri.path, status: status, duration: duration,
                requestID: context.id, userID: context.authenticatedUserID.withLockedValue { $0 }))
    }

    /// 1–128 characters of letters, digits and `-_.:` (anything else could forge log fields).
    static func isUsableRequestID(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"):
                    return true
                default:
                    return false
                }
            }
    }
}
