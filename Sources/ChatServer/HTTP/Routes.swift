import Hummingbird

/// Registers routes and remembers which methods each path has, so that the other methods
/// answer 405 (with `Allow`) instead of the router's 404; also the list a test compares
/// with the OpenAPI document.
public final class RouteRegistry: @unchecked Sendable {
    private var methods: [(path: String, methods: [HTTPRequest.Method])] = []
    private var webSocketPaths: [String] = []

    public init() {}

    /// Every route as `(method, path)`, paths as registered (`chat/rooms/:room_id`);
    /// WebSocket upgrades as GET.
    public var routes: [(method: HTTPRequest.Method, path: String)] {
        methods.flatMap { entry in entry.methods.map { ($0, entry.path) } } + webSocketPaths.map { (.get, $0) }
    }

    /// A WebSocket upgrade path (served by the WebSocket router: no 405 responders).
    func recordWebSocket(_ path: String) {
        webSocketPaths.append(path)
    }

    func record(_ path: String, _ method: HTTPRequest.Method) {
        if let index = methods.firstIndex(where: { $0.path == path }) {
            methods[index].methods.append(method)
        } else {
            methods.append((path, [method]))
        }
    }

    /// Adds a 405 responder for every standard method a recorded path lacks.
    func addMethodNotAllowedRoutes(to router: Router<ChatRequestContext>) {
        let all: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options, .trace]
        for (path, registered) in methods {
            let allow = registered.map(\.rawValue).joined(separator: ", ")
            for method in all where !registered.contains(method) {
                router.on(RouterPath(path), method: method) { _, _ -> Response in
                    throw APIError(.methodNotAllowed, "Method Not Allowed", headers: [.allow: allow])
                }
            }
        }
    }
}

/// A route group that records its routes in a `RouteRegistry`.
struct Routes {
    let group: RouterGroup<ChatRequestContext>
    let prefix: String
    let registry: RouteRegistry

    func on(
        _ path: String, _ method: HTTPRequest.Method,
        use handler: @Sendable @escaping (Request, ChatRequestContext) async throws -> some ResponseGenerator
    ) {
        group.on(RouterPath(path), method: method, use: handler)
        registry.record(path.isEmpty ? prefix : "\(prefix)/\(path)", method)
    }
}
