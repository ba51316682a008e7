import Foundation
import Testing
import HTTPTypes

@testable import ChatServer

@Suite struct HTTPBehaviourTests {
    @Test func healthReadyAndMetrics() async throws {
        try await withApp { api in
            let health = try await api.request(.get, "/health")
            #expect(health.status == .ok)
            #expect(health["status"] as? String == "ok")
            #expect(try await api.request(.get, "/ready").status == .ok)
            let metrics = try await api.request(.get, "/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.raw.contains("db_pool_open_connections"))
            let openAPI = try await api.request(.get, "/openapi.json")
            #expect(openAPI.status == .ok)
            #expect((openAPI["openapi"] as? String)?.hasPrefix("3.") == true)
            let paths = try #require(openAPI["paths"] as? [String: Any])
            for path in [
                "/auth/register/", "/chat/rooms/", "/chat/rooms/{room_id}/messages/", "/chat/rooms/{room_id}/search/",
                "/chat/search/", "/chat/rooms/{room_id}/settings/", "/uploads/{name}", "/chat/rooms/{room_id}/read/",
            ] {
                #expect(paths[path] != nil, "\(path)")
            }
        }
    }

    @Test func readyIs503WhenTheDatabaseIsUnreachable() async throws {
        try await withApp(configure: {
            $0.database.url = .init("postgresql://nobody@127.0.0.1:1/none")
            $0.database.migrateOnStart = false
        }) { api in
            let ready = try await api.request(.get, "/ready")
            #expect(ready.status == .serviceUnavailable)
            #expect(ready.detail != nil)
            #expect(try await api.request(.get, "/health").status == .ok)
            // An API call that needs the database is 503 too, with no internals in the body.
            let token = try await TestAPI.token(sub: "5", name: nil)
            let rooms = try await api.request(.get, "/chat/rooms/", token: token)
            #expect(rooms.status == .serviceUnavailable)
            #expect(rooms.detail?.contains("127.0.0.1") == false)
        }
    }

    @Test func unknownRoutesAndWrongMethodsUseDetailBodies() async throws {
        try await withApp { api in
            let user = try await api.makeUser()
            let missing = try await api.request(.get, "/no/such/route", token: user.token)
            #expect(missing.status == .notFound)
            #expect(missing.detail != nil)
            let wrongMethod = try await api.request(.patch, "/chat/rooms/", token: user.token)
            #expect(wrongMethod.status == .methodNotAllowed)
            #expect(wrongMethod.detail != nil)
            #expect(wrongMethod.headers[.allow]?.contains("GET") == true)
            #expect(try await api.request(.delete, "/auth/login").status == .methodNotAllowed)
        }
    }

    @Test func pathsWorkWithAndWithoutTrailingSlash() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            for path in [
                "/chat/rooms", "/chat/rooms/", "/chat/rooms/\(room)", "/chat/rooms/\(room)/",
                "/chat/rooms/\(room)/participants", "/chat/rooms/\(room)/participants/",
                "/chat/rooms/\(room)/messages", "/chat/rooms/\(room)/messages/",
            ] {
                let response = try await api.request(.get, path, token: a.token)
                #expect(response.status == .ok, "\(path): \(response.raw)")
            }
        }
    }

    @Test func malformedBodiesAre422AndOversizedAre413() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let path = "/chat/rooms/\(room)/messages/"
            for raw in ["{", "[]", "\"text\"", "{\"message_content\": 5}", "{\"message_content\": null}",
                "{\"message_content\": \"x\", \"reply_to_message_id\": \"1\"}",
                "{\"message_content\": \"x\", \"reply_to_message_id\": 1.5}",
                "{\"message_content\": \"x\", \"reply_to_message_id\": 99999999999999999999999}", ""]
            {
                let response = try await api.request(
                    .post, path, token: a.token, rawBody: raw, headers: [.contentType: "application/json"])
                #expect(response.status == .unprocessableContent, "\(raw): \(response.raw)")
                #expect(response.detail != nil)
            }
            let huge = "{\"message_content\": \"" + String(repeating: "a", count: 2 << 20) + "\"}"
            let tooLarge = try await api.request(.post, path, token: a.token, rawBody: huge)
            #expect(tooLarge.status == .contentTooLarge)
            #expect(tooLarge.detail != nil)
            // Nothing was stored by any of these.
            #expect(try await api.request(.get, path, token: a.token).int("total_count") == 0)
        }
    }

    @Test func pathIDsAreValidated() async throws {
        try await withApp { api in
            let user = try await api.makeUser()
            #expect(try await api.request(.get, "/chat/rooms/abc/", token: user.token).status == .unprocessableContent)
            #expect(try await api.request(.get, "/chat/rooms/0/", token: user.token).status == .notFound)
            #expect(try await api.request(.get, "/chat/rooms/-4/", token: user.token).status == .notFound)
            #expect(
                try await api.request(.get, "/chat/rooms/99999999999999999999/", token: user.token).status
                    == .unprocessableContent)
        }
    }

    @Test func queryStringsAreFormEncoded() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            try await api.send(a, room, "hello+world and hello world")
            // `+` is a space (Dart writes spaces so): three of them are a blank query.
            #expect(try await api.request(.get, "/chat/rooms/\(room)/search/?query=+++", token: a.token).status == .unprocessableContent)
            let spaced = try await api.request(.get, "/chat/rooms/\(room)/search/?query=hello+world", token: a.token)
            #expect(spaced.status == .ok)
            #expect(spaced.int("total_count") == 1)
            // %2B is a plus sign; percent-encoded UTF-8 is text; bytes that are not UTF-8 are 422.
            let plus = try await api.request(.get, "/chat/rooms/\(room)/search/?query=hello%2Bworld", token: a.token)
            #expect(plus.status == .ok)
            let korean = try await api.request(
                .get, "/chat/rooms/\(room)/search/?query=%EC%95%88%EB%85%95", token: a.token)
            #expect(korean.status == .ok)
            let bad = try await api.request(.get, "/chat/rooms/\(room)/search/?query=%FF%FE", token: a.token)
            #expect(bad.status == .unprocessableContent)
            #expect(bad.detail != nil)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/messages/?size=+5", token: a.token).status == .unprocessableContent)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/messages/?size=5", token: a.token).status == .ok)
        }
    }

    @Test func bodiesThatAreNotUTF8Are422WhereverTheBadBytesSit() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            // The bad bytes sit in a field that the endpoint ignores.
            let body = Array(#"{"message_content": "ok", "ignored": ""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)
            for (method, path) in [
                (HTTPRequest.Method.post, "/chat/rooms/\(room)/messages/"), (.post, "/chat/rooms/\(room)/read/"),
                (.put, "/chat/rooms/\(room)/settings/"),
            ] {
                let response = try await api.request(
                    method, path, token: a.token, rawBytes: body, headers: [.contentType: "application/json"])
                #expect(response.status == .unprocessableContent, "\(path): \(response.raw)")
                #expect(response.detail != nil)
            }
            let stored = try await api.request(.get, "/chat/rooms/\(room)/messages/", token: a.token)
            #expect(stored.int("total_count") == 0)
        }
    }

    @Test func headAndTraceAre405AndTypeErrorsReadAsJSON() async throws {
        try await withApp { api in
            let user = try await api.makeUser()
            for method in [HTTPRequest.Method.head, .trace] {
                let response = try await api.request(method, "/chat/rooms/", token: user.token)
                #expect(response.status == .methodNotAllowed, "\(method)")
                #expect(response.headers[.allow] != nil)
            }
            // A body of the wrong JSON type is described in JSON's words, not Swift's.
            let array = try await api.request(.post, "/chat/rooms/", token: user.token, json: [1, 2])
            #expect(array.status == .unprocessableContent)
            #expect(array.detail?.contains("Dictionary") == false, "\(array.raw)")
            #expect(array.detail?.contains("object") == true, "\(array.raw)")
        }
    }
}

@Suite struct CORSDefaultTests {
    /// Without CORS_ALLOWED_ORIGINS nothing changes: no CORS headers, OPTIONS is 405.
    @Test func corsIsOffByDefault() async throws {
        try await withApp { api in
            let preflight = try await api.request(
                .options, "/chat/rooms/", headers: [.origin: "https://app.example.com", .accessControlRequestMethod: "POST"])
            #expect(preflight.status == .methodNotAllowed)
            #expect(preflight.headers[.accessControlAllowOrigin] == nil)
        }
    }

    @Test func originsMustBeOrigins() throws {
        #expect(throws: AppConfiguration.Invalid.self) { try CORSPolicy(parsing: "app.example.com") }
        #expect(throws: AppConfiguration.Invalid.self) { try CORSPolicy(parsing: "https://app.example.com/") }
        #expect(try CORSPolicy(parsing: " * ") == .anyOrigin)
        #expect(try CORSPolicy(parsing: "") == .off)
        #expect(try CORSPolicy(parsing: "https://A.example, http://b.example:8080") == .origins(["https://a.example", "http://b.example:8080"]))
    }
}
