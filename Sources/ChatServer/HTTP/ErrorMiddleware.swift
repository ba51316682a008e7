import Hummingbird
import Logging
import Postgres

/// Turns every error thrown by a route into the contract's `{"detail": ...}` response.
/// Database failures become 503 (unreachable) or 500; a 500 never carries internals.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            return try response(for: error, request: request, context: context)
        }
    }

    func response(for error: any Error, request: Request, context: Context) throws -> Response {
        if let apiError = APIError.from(error) {
            return try apiError.response(from: request, context: context)
        }
        if let error = error as? PostgresError, error.isUnavailable {
            context.logger.warning(
                "database unavailable", metadata: ["error": "\(String(reflecting: error))"])
            return try APIError(.serviceUnavailable, "Database unavailable, try again later", headers: [.retryAfter: "1"])
                .response(from: request, context: context)
        }
        context.logger.error(
            "unhandled error",
            metadata: ["error": "\(String(reflecting: error))", "http.path": "\(request.uri.path)"])
        return try APIError(.internalServerError, "Internal server error").response(from: request, context: context)
    }
}
