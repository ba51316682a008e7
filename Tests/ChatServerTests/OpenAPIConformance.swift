import Foundation
import HTTPTypes
import Testing

@testable import ChatServer

/// The OpenAPI document against what the server does: every response the suite receives
/// through `TestAPI` is checked against the schema the document gives for its operation and
/// status (a status the document does not list is an issue too), so the document cannot
/// drift from the server without a test failing.
final class OpenAPIConformance: Sendable {
    static let shared = OpenAPIConformance()

    // The parsed document: read-only after init.
    nonisolated(unsafe) let document: [String: Any]
    nonisolated(unsafe) let paths: [String: [String: Any]]

    init() {
        let parsed = try? JSONSerialization.jsonObject(with: Data(OpenAPIResources.document.utf8)) as? [String: Any]
        document = parsed ?? [:]
        paths = document["paths"] as? [String: [String: Any]] ?? [:]
    }

    /// Path segments with `{name}` (the document) or `:name` (the router) as a wildcard.
    static func segments(_ path: String) -> [String] {
        path.split(separator: "/").map { $0.hasPrefix("{") || $0.hasPrefix(":") ? "*" : String($0) }
    }

    /// The document's path template a request path matches (trailing slashes aside).
    func template(for path: String) -> String? {
        let request = path.split(separator: "/").map(String.init)
        return paths.keys.first { key in
            let parts = Self.segments(key)
            return parts.count == request.count && zip(parts, request).allSatisfy { $0 == "*" || $0 == $1 }
        }
    }

    func check(method: HTTPRequest.Method, uri: String, status: Int, contentType: String?, json: Any?) {
        let path = String(uri.split(separator: "?", maxSplits: 1).first ?? "")
        // Requests outside the document (unknown paths) and methods a path lacks (405) are
        // the router's generic answers, not operations.
        guard let template = template(for: path), let operation = paths[template]?[method.rawValue.lowercased()] as? [String: Any]
        else { return }
        let responses = operation["responses"] as? [String: Any] ?? [:]
        guard var response = (responses[String(status)] ?? responses["default"]) as? [String: Any] else {
            Issue.record("\(method) \(template): status \(status) is not in the OpenAPI document")
            return
        }
        if let ref = response["$ref"] as? String, let resolved = resolve(ref) { response = resolved }
        guard let content = response["content"] as? [String: Any] else {
            return
        }
        guard let media = content["application/json"] as? [String: Any], let schema = media["schema"] else {
            return  // a documented non-JSON body (files, metrics, HTML)
        }
        guard contentType?.hasPrefix("application/json") == true, let json else {
            Issue.record("\(method) \(template) \(status): the document promises JSON, got \(contentType ?? "no content type")")
            return
        }
        for problem in validate(json, against: schema, at: "body") {
            Issue.record("\(method) \(template) \(status): \(problem)")
        }
    }

    /// JSONSerialization's booleans are NSNumbers of their own class (`1 is Bool` holds too).
    static func isBoolean(_ value: Any) -> Bool {
        String(describing: type(of: value)).contains("Boolean")
    }

    func resolve(_ ref: String) -> [String: Any]? {
        guard ref.hasPrefix("#/") else { return nil }
        var node: Any? = document
        for part in ref.dropFirst(2).split(separator: "/") { node = (node as? [String: Any])?[String(part)] }
        return node as? [String: Any]
    }

    /// What in `value` breaks `schema` (type, nullable, required, properties, items, enum,
    /// allOf/oneOf/anyOf; formats are not checked).
    func validate(_ value: Any, against schemaNode: Any, at location: String) -> [String] {
        guard var schema = schemaNode as? [String: Any] else { return [] }
        if let ref = schema["$ref"] as? String {
            guard let resolved = resolve(ref) else { return ["\(location): unresolvable \(ref)"] }
            schema = resolved
        }
        if value is NSNull {
            return schema["nullable"] as? Bool == true || schema["type"] == nil && schema["allOf"] == nil && schema["oneOf"] == nil
                ? [] : ["\(location) is null but not nullable"]
        }
        if let all = schema["allOf"] as? [Any] {
            return all.flatMap { validate(value, against: $0, at: location) }
        }
        for key in ["oneOf", "anyOf"] {
            if let options = schema[key] as? [Any] {
                return options.contains { validate(value, against: $0, at: location).isEmpty } ? [] : ["\(location) matches none of \(key)"]
            }
        }
        if let allowed = schema["enum"] as? [Any], !allowed.contains(where: { "\($0)" == "\(value)" }) {
            return ["\(location) = \(value) is not one of \(allowed)"]
        }
        switch schema["type"] as? String {
        case "object":
            guard let object = value as? [String: Any] else { return ["\(location) is not an object"] }
            var problems: [String] = []
            for name in schema["required"] as? [String] ?? [] where object[name] == nil {
                problems.append("\(location).\(name) is required but missing")
            }
            for (name, property) in schema["properties"] as? [String: Any] ?? [:] {
                if let field = object[name] { problems += validate(field, against: property, at: "\(location).\(name)") }
            }
            return problems
        case "array":
            guard let array = value as? [Any] else { return ["\(location) is not an array"] }
            return array.prefix(50).enumerated().flatMap { validate($1, against: schema["items"] ?? [:], at: "\(location)[\($0)]") }
        case "string":
            return value is String ? [] : ["\(location) is not a string"]
        case "integer":
            guard let number = value as? NSNumber, !Self.isBoolean(value), number.doubleValue == number.doubleValue.rounded()
            else { return ["\(location) = \(value) is not an integer"] }
            return []
        case "number":
            guard value is NSNumber, !Self.isBoolean(value) else { return ["\(location) is not a number"] }
            return []
        case "boolean":
            guard Self.isBoolean(value) else { return ["\(location) is not a boolean"] }
            return []
        default:
            return []
        }
    }
}

@Suite struct OpenAPIDocumentTests {
    /// The document's operations are exactly the routes the server registers.
    @Test func operationsAreTheRegisteredRoutes() async throws {
        let registry = RouteRegistry()
        try await withApp(routes: registry) { _ in }
        func key(_ method: String, _ path: String) -> String {
            "\(method.uppercased()) /" + OpenAPIConformance.segments(path).joined(separator: "/")
        }
        let registered = Set(registry.routes.map { key($0.method.rawValue, $0.path) })
        var documented = Set<String>()
        for (path, item) in OpenAPIConformance.shared.paths {
            for method in item.keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                documented.insert(key(method, path))
            }
        }
        #expect(registered.count > 20)
        #expect(documented.subtracting(registered).isEmpty, "documented, not served: \(documented.subtracting(registered).sorted())")
        #expect(registered.subtracting(documented).isEmpty, "served, not documented: \(registered.subtracting(documented).sorted())")
    }

    /// docs/reference.md has a `### METHOD /path` section for every operation, and no other.
    @Test func theReferenceCoversEveryOperation() throws {
        let reference = try String(
            contentsOf: ConfigurationTests.repository.appendingPathComponent("docs/reference.md"), encoding: .utf8)
        let headings = Set(reference.split(separator: "\n").filter { $0.hasPrefix("### ") && $0.contains(" /") }.map { String($0.dropFirst(4)) })
        var operations = Set<String>()
        for (path, item) in OpenAPIConformance.shared.paths {
            for method in item.keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                operations.insert("\(method.uppercased()) \(path)")
            }
        }
        #expect(operations.subtracting(headings).isEmpty, "not in docs/reference.md: \(operations.subtracting(headings).sorted())")
        #expect(headings.subtracting(operations).isEmpty, "not in the document: \(headings.subtracting(operations).sorted())")
    }

    /// The validator itself catches what it must (so the conformance checks can fail).
    @Test func theValidatorFindsProblems() {
        let conformance = OpenAPIConformance.shared
        let schema: [String: Any] = [
            "type": "object", "required": ["id", "name"],
            "properties": ["id": ["type": "integer"], "name": ["type": "string"], "note": ["type": "string", "nullable": true]],
        ]
        #expect(conformance.validate(["id": 1, "name": "가", "note": NSNull()], against: schema, at: "x").isEmpty)
        #expect(conformance.validate(["id": 1], against: schema, at: "x") == ["x.name is required but missing"])
        #expect(!conformance.validate(["id": "1", "name": NSNull()], against: schema, at: "x").isEmpty)
        #expect(conformance.template(for: "/chat/rooms/12/messages/") == "/chat/rooms/{room_id}/messages/")
    }
}
