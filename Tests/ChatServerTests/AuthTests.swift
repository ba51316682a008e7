import Foundation
import HTTPTypes
import HummingbirdBcrypt
import JWTKit
import Postgres
import Testing

@testable import ChatServer

@Suite struct AuthTests {
    @Test func registerLoginAndMe() async throws {
        try await withApp { api in
            let name = "박주호-\(UInt32.random(in: 0...UInt32.max))"
            let registered = try await api.request(
                .post, "/auth/register", json: ["user_name": "  \(name)  ", "password": "correct horse"])
            #expect(registered.status == .created, "\(registered.raw)")
            expectKeys(registered.object, ["user_id", "user_name", "created_at"])
            #expect(registered["user_name"] as? String == name)  // trimmed
            expectTimestamp(registered["created_at"])

            let again = try await api.request(.post, "/auth/register/", json: ["user_name": name, "password": "whatever1"])
            #expect(again.status == .conflict)
            #expect(again.detail != nil)

            let login = try await api.request(.post, "/auth/login", json: ["user_name": name, "password": "correct horse"])
            #expect(login.status == .ok, "\(login.raw)")
            expectKeys(login.object, ["access_token", "token_type", "expires_in", "user_id", "user_name"])
            #expect(login["token_type"] as? String == "bearer")
            #expect(login.int("expires_in") == 86_400)
            #expect(login.int("user_id") == registered.int("user_id"))

            let token = try #require(login["access_token"] as? String)
            let me = try await api.request(.get, "/auth/me/", token: token)
            #expect(me.status == .ok)
            expectKeys(me.object, ["user_id", "user_name"])
            #expect(me["user_name"] as? String == name)

            let wrongPassword = try await api.request(.post, "/auth/login", json: ["user_name": name, "password": "wrong pass"])
            let unknownUser = try await api.request(
                .post, "/auth/login", json: ["user_name": "nobody-\(UInt64.random(in: 0...UInt64.max))", "password": "wrong pass"])
            #expect(wrongPassword.status == .unauthorized)
            #expect(unknownUser.status == .unauthorized)
            #expect(wrongPassword.detail == unknownUser.detail)
            #expect(wrongPassword.headers[.wwwAuthenticate] == "Bearer")
        }
    }

    @Test func registrationValidation() async throws {
        try await withApp { api in
            let cases: [[String: Any]] = [
                ["user_name": "ok-name", "password": "short"],
                ["user_name": "ok-name", "password": String(repeating: "p", count: 129)],
                ["user_name": "   ", "password": "long enough"],
                ["user_name": String(repeating: "가", count: 51), "password": "long enough"],
                ["user_name": "ok-name"],
                ["user_name": 5, "password": "long enough"],
                ["user_name": "nul\u{0}name", "password": "long enough"],
            ]
            for body in cases {
                let response = try await api.request(.post, "/auth/register", json: body)
                #expect(response.status == .unprocessableContent, "\(body) -> \(response.raw)")
                #expect(response.detail != nil)
            }
            let fifty = try await api.request(
                .post, "/auth/register",
                json: ["user_name": String(repeating: "가", count: 45) + String(UInt16.random(in: 10000...65000)), "password": "12345678"])
            #expect(fifty.status == .created, "\(fifty.raw)")
        }
    }

    /// Issue 12.7: a token naming the top id, and tokens holding the ids right after the
    /// newest registration, must not end registration (it answered 500 for good before 0010).
    @Test func tokenUsersCannotExhaustRegistrationIDs() async throws {
        try await withApp { api in
            func register() async throws -> Int64 {
                let response = try await api.request(
                    .post, "/auth/register",
                    json: ["user_name": "id-\(UInt64.random(in: 0...UInt64.max))", "password": "correct horse"])
                #expect(response.status == .created, "\(response.raw)")
                return try #require(response.int("user_id"))
            }
            let first = try await register()
            var taken: Set<Int64> = [Int64.max, Int64.max - 1]
            for id in [Int64.max, Int64.max - 1, first + 1, first + 2, first + 3] {
                let me = try await api.request(.get, "/auth/me", token: try await TestAPI.token(sub: String(id), name: nil))
                #expect(me.status == .ok, "\(id): \(me.raw)")
                taken.insert(id)
            }
            for _ in 0..<3 {
                let id = try await register()
                #expect(id > first && !taken.contains(id), "registered as \(id)")
            }
        }
    }

    /// Issue 12.12: names that look the same to people cannot both register.
    @Test func loginNamesAreUniqueUpToCaseAndCompatibilityForms() async throws {
        try await withApp { api in
            let n = UInt32.random(in: 0...UInt32.max)
            func register(_ name: String) async throws -> JSONResponse {
                try await api.request(.post, "/auth/register", json: ["user_name": name, "password": "correct horse"])
            }
            #expect(try await register("Kim-\(n)").status == .created)
            for lookalike in ["kim-\(n)", "KIM-\(n)", "Ｋｉｍ-\(n)"] {
                let response = try await register(lookalike)
                #expect(response.status == .conflict, "\(lookalike): \(response.raw)")
            }
            for invisible in ["ab\u{202E}cd-\(n)", "ab\u{200B}cd-\(n)", "ab\u{7}cd-\(n)", "ab\u{2028}cd-\(n)", "pаypal-\(n)"] {
                let response = try await register(invisible)
                #expect(response.status == .unprocessableContent, "\(invisible.unicodeScalars.map { String($0.value, radix: 16) }): \(response.raw)")
                #expect(response.detail != nil)
            }
            // Joined emoji, Korean beside Latin, and a whole Cyrillic name are fine.
            for fine in ["👨\u{200D}👩\u{200D}👧-\(n)", "민수Kim-\(n)", "Дмитрий-\(n)"] {
                let response = try await register(fine)
                #expect(response.status == .created, "\(fine): \(response.raw)")
            }
            // Login still takes the name exactly as registered.
            let login = try await api.request(.post, "/auth/login", json: ["user_name": "Kim-\(n)", "password": "correct horse"])
            #expect(login.status == .ok)
        }
    }

    @Test func tokenFailuresAre401WithBearerChallenge() async throws {
        try await withApp { api in
            let keys = JWTKeyCollection()
            await keys.add(hmac: HMACKey(from: TestAPI.secret), digestAlgorithm: .sha256)
            let otherKeys = JWTKeyCollection()
            await otherKeys.add(hmac: HMACKey(from: "another-secret-that-is-long-enough-for-hs256-and-more-bytes-besides"), digestAlgorithm: .sha256)
            let hs512 = JWTKeyCollection()
            await hs512.add(hmac: HMACKey(from: TestAPI.secret), digestAlgorithm: .sha512)

            struct NoExp: JWTPayload {
                var sub: String
                func verify(using algorithm: some JWTAlgorithm) async throws {}
            }
            let claims = AccessTokenClaims(
                sub: "77", name: nil, exp: ExpirationClaim(value: Date().addingTimeInterval(600)), iat: nil)
            func base64URL(_ text: String) -> String {
                Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                    .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            }
            let unsigned =
                base64URL(#"{"alg":"none","typ":"JWT"}"#) + "."
                + base64URL(#"{"sub":"77","exp":\#(Int(Date().timeIntervalSince1970) + 600)}"#) + "."
            let tokens: [(String, String?)] = [
                ("missing", nil),
                ("expired", try await TestAPI.token(sub: "77", name: nil, expiresIn: -60)),
                ("no exp", try await keys.sign(NoExp(sub: "77"))),
                ("other key", try await otherKeys.sign(claims)),
                ("HS512", try await hs512.sign(claims)),
                ("alg none", unsigned),
                ("garbage", "not.a.jwt"),
                ("sub not a number", try await TestAPI.token(sub: "abc", name: nil)),
                ("sub zero", try await TestAPI.token(sub: "0", name: nil)),
            ]
            for (label, token) in tokens {
                let response = try await api.request(.get, "/chat/rooms/", token: token)
                #expect(response.status == .unauthorized, "\(label): \(response.raw)")
                #expect(response.headers[.wwwAuthenticate] == "Bearer", "\(label)")
                #expect(response.detail != nil, "\(label)")
            }
            let basic = try await api.request(.get, "/chat/rooms", headers: [.authorization: "Basic dXNlcjpwYXNz"])
            #expect(basic.status == .unauthorized)
            for blank in ["Bearer", "Bearer ", "Bearer \t "] {
                #expect(try await api.request(.get, "/auth/me", headers: [.authorization: blank]).status == .unauthorized, "\(blank)")
            }
        }
    }

    /// The scheme is case-insensitive, and blanks around the token do not matter.
    @Test func bearerTokensAreFoundAmongBlanks() async throws {
        try await withApp { api in
            let user = try await api.makeUser()
            for header in ["Bearer \(user.token)", "bearer   \(user.token)", "BEARER \t\(user.token) \t"] {
                let response = try await api.request(.get, "/auth/me", headers: [.authorization: header])
                #expect(response.status == .ok, "\(header.prefix(12)): \(response.raw)")
            }
        }
    }

    @Test func tokenUsersAreCreatedAndRenamedFromClaims() async throws {
        try await withApp { api in
            let id = Int64.random(in: 1_000_000_000...4_000_000_000_000)
            // sub as a JSON number, no name claim: the user is created as user<ID>.
            let keys = JWTKeyCollection()
            await keys.add(hmac: HMACKey(from: TestAPI.secret), digestAlgorithm: .sha256)
            struct NumericSub: JWTPayload {
                var sub: Int64
                var exp: ExpirationClaim
                func verify(using algorithm: some JWTAlgorithm) async throws {}
            }
            let numeric = try await keys.sign(NumericSub(sub: id, exp: .init(value: Date().addingTimeInterval(600))))
            let first = try await api.request(.get, "/auth/me", token: numeric)
            #expect(first.status == .ok, "\(first.raw)")
            #expect(first.int("user_id") == id)
            #expect(first["user_name"] as? String == "user\(id)")

            let named = try await TestAPI.token(sub: String(id), name: "김철수")
            #expect(try await api.request(.get, "/auth/me", token: named)["user_name"] as? String == "김철수")
            let renamed = try await TestAPI.token(sub: String(id), name: "김철수2")
            #expect(try await api.request(.get, "/auth/me", token: renamed)["user_name"] as? String == "김철수2")
            // A token without a name keeps the current one.
            #expect(try await api.request(.get, "/auth/me", token: numeric)["user_name"] as? String == "김철수2")
        }
    }

    @Test func notBeforeAndCriticalHeadersAreHonoured() async throws {
        try await withApp { api in
            let keys = JWTKeyCollection()
            await keys.add(hmac: HMACKey(from: TestAPI.secret), digestAlgorithm: .sha256)
            let id = Int64.random(in: 1_000_000_000...4_000_000_000_000)
            func claims(notBefore: TimeInterval?) -> AccessTokenClaims {
                var claims = AccessTokenClaims(
                    sub: String(id), name: nil, exp: ExpirationClaim(value: Date().addingTimeInterval(600)), iat: nil)
                claims.nbf = notBefore.map { NotBeforeClaim(value: Date().addingTimeInterval($0)) }
                return claims
            }
            let future = try await keys.sign(claims(notBefore: 300))
            let past = try await keys.sign(claims(notBefore: -300))
            let critical = try await keys.sign(claims(notBefore: nil), header: ["crit": ["exp"], "exp": "x"])
            #expect(try await api.request(.get, "/auth/me", token: future).status == .unauthorized)
            #expect(try await api.request(.get, "/auth/me", token: critical).status == .unauthorized)
            #expect(try await api.request(.get, "/auth/me", token: past).status == .ok)
        }
    }

    @Test func issuedTokensCarryIntegerTimes() async throws {
        try await withApp { api in
            let name = "정수-\(UInt32.random(in: 0...UInt32.max))"
            #expect(try await api.request(.post, "/auth/register", json: ["user_name": name, "password": "correct horse"]).status == .created)
            let login = try await api.request(.post, "/auth/login", json: ["user_name": name, "password": "correct horse"])
            let token = try #require(login["access_token"] as? String)
            var payload = String(token.split(separator: ".")[1]).replacingOccurrences(of: "-", with: "+")
                .replacingOccurrences(of: "_", with: "/")
            while payload.count % 4 != 0 { payload += "=" }
            let text = String(decoding: try #require(Data(base64Encoded: payload)), as: UTF8.self)
            // Dart's `exp as int` must work: the numbers are written without a fraction.
            for key in ["exp", "iat"] {
                #expect(text.range(of: #""\#(key)":\d+[,}]"#, options: .regularExpression) != nil, "\(key) in \(text)")
            }
        }
    }

    /// Every character of a password counts, old bcrypt hashes still work and are upgraded,
    /// and a changed cost is applied at the next login.
    @Test func passwordsCountWholeAndHashesAreUpgraded() async throws {
        let name = "긴암호-\(UInt32.random(in: 0...UInt32.max))"
        let long = String(repeating: "가", count: 24) + String(repeating: "나", count: 104)
        try await withApp { (api: TestAPI) async throws in
            #expect(try await api.request(.post, "/auth/register", json: ["user_name": name, "password": long]).status == .created)
            // The same first 72 bytes are not the same password.
            let imposter = String(repeating: "가", count: 128)
            #expect(try await api.request(.post, "/auth/login", json: ["user_name": name, "password": imposter]).status == .unauthorized)
            #expect(try await api.request(.post, "/auth/login", json: ["user_name": name, "password": long]).status == .ok)
        }
        let db = PostgresClient(configuration: PostgresConfiguration(url: ProcessInfo.processInfo.environment["DATABASE_URL"]!, poolSize: 1))
        @Sendable func storedHash() async throws -> String {
            try await db.queryRow("SELECT password_hash FROM users WHERE user_name = \(name)").decode(String.self, column: 0)
        }
        #expect((try await storedHash()).hasPrefix("$chat2$$2b$04$"))
        // A hash from before (plain bcrypt of the password) still logs in, and is replaced.
        let legacy = Bcrypt.hash("old password 1", cost: 4)
        try await db.execute("UPDATE users SET password_hash = \(legacy) WHERE user_name = \(name)")
        try await withApp(configure: { $0.auth.bcryptCost = 5 }) { (api: TestAPI) async throws in
            #expect(try await api.request(.post, "/auth/login", json: ["user_name": name, "password": "old password 2"]).status == .unauthorized)
            #expect((try await storedHash()) == legacy)
            #expect(try await api.request(.post, "/auth/login", json: ["user_name": name, "password": "old password 1"]).status == .ok)
            #expect((try await storedHash()).hasPrefix("$chat2$$2b$05$"))
            #expect(try await api.request(.post, "/auth/login", json: ["user_name": name, "password": "old password 1"]).status == .ok)
        }
        // BCRYPT_COST changed again: rehashed at the next login.
        try await withApp(configure: { $0.auth.bcryptCost = 4 }) { (api: TestAPI) async throws in
            #expect(try await api.request(.post, "/auth/login", json: ["user_name": name, "password": "old password 1"]).status == .ok)
            #expect((try await storedHash()).hasPrefix("$chat2$$2b$04$"))
        }
        await db.shutdown()
    }

    /// A sign-in flood is bounded: past BCRYPT_MAX_PENDING hashes in progress, 503 at once.
    @Test func aSignInFloodIsRefusedNotQueued() async throws {
        try await withApp(configure: {
            $0.auth.bcryptCost = 10
            $0.auth.bcryptMaxPending = 2
        }) { api in
            let statuses = try await withThrowingTaskGroup(of: (HTTPResponse.Status, String?).self) { group in
                for index in 0..<12 {
                    group.addTask {
                        let response = try await api.request(
                            .post, "/auth/login", json: ["user_name": "nobody-\(index)", "password": "wrong password"])
                        return (response.status, response.headers[.retryAfter])
                    }
                }
                var all: [(HTTPResponse.Status, String?)] = []
                for try await status in group { all.append(status) }
                return all
            }
            #expect(statuses.allSatisfy { $0.0 == .unauthorized || $0.0 == .serviceUnavailable })
            #expect(statuses.contains { $0.0 == .serviceUnavailable && $0.1 == "1" })
            #expect(statuses.contains { $0.0 == .unauthorized })
        }
    }
}
