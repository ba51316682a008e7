import HTTPTypes
import Hummingbird

/// Which web origins may call the API from a browser (`CORS_ALLOWED_ORIGINS`): off (no CORS
/// headers, the default), a list of exact origins, or any origin (`*`). Tokens travel in
/// the `Authorization` header, never cookies, so credentials mode is not offered.
public enum CORSPolicy: Sendable, Equatable {
    case off
    case anyOrigin
    case origins(Set<String>)

    /// `""` off, `*` any, else comma-separated origins such as `https://app.example.com`.
    public init(parsing text: String?) throws(AppConfiguration.Invalid) {
        let entries = (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if entries.isEmpty {
            self = .off
        } else if entries == ["*"] {
            self = .anyOrigin
        } else {
            for entry in entries where !(entry.hasPrefix("http://") || entry.hasPrefix("https://")) || entry.hasSuffix("/") {
                throw AppConfiguration.Invalid(
                    description: "CORS_ALLOWED_ORIGINS entries must be origins like https://app.example.com (scheme and host, no path), or *")
            }
            self = .origins(Set(entries.map { $0.lowercased() }))
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`; nil: not allowed.
    func allowedOrigin(_ origin: String) -> String? {
        switch self {
        case .off: return nil
        case .anyOrigin: return "*"
        case .origins(let origins): return origins.contains(origin.lowercased()) ? origin : nil
        }
    }

    /// Whether a WebSocket upgrade with this `Origin` header may proceed: always when the
    /// policy is off or the header is absent (native clients send none).
    func admitsWebSocket(origin: String?) -> Bool {
        guard case .origins = self, let origin else { return true }
        return allowedOrigin(origin) != nil
    }
}

/// Answers CORS preflights and adds `Access-Control-Allow-Origin` to answers for allowed
/// origins (errors included: it sits outside the error middleware).
struct CORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let policy: CORSPolicy

    static var allowedMethods: String { "GET, POST, PUT, DELETE, OPTIONS" }
    static var allowedHeaders: String { "Authorization, Content-Type, Accept, X-Request-ID" }
    static var exposedHeaders: String { "Retry-After, X-Request-ID, ETag, Content-Disposition" }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard policy != .off, let origin = request.headers[.origin] else {
            return try await next(request, context)
        }
        let allowed = policy.allowedOrigin(origin)
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            var headers: HTTPFields = [.vary: "Origin"]
            if let allowed {
                headers[.accessControlAllowOrigin] = allowed
                headers[.accessControlAllowMethods] = Self.allowedMethods
                headers[.accessControlAllowHeaders] = Self.allowedHeaders
                headers[.accessControlMaxAge] = "600"
            }
            return Response(status: .noContent, headers: headers)
        }
        var response = try await next(request, context)
        response.headers[values: .vary].append("Origin")
        if let allowed {
            response.headers[.accessControlAllowOrigin] = allowed
            response.headers[.accessControlExposeHeaders] = Self.exposedHeaders
        }
        return response
    }
}
