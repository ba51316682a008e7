import Foundation
import JWTKit

/// The claims of an access token. `sub` may be a string or a number (tokens can come from
/// another service sharing the secret); `exp` is required.
struct AccessTokenClaims: JWTPayload {
    var sub: String
    var name: String?
    var exp: ExpirationClaim
    var iat: IssuedAtClaim?

    init(sub: String, name: String?, exp: ExpirationClaim, iat: IssuedAtClaim?) {
        self.sub = sub
        self.name = name
        self.exp = exp
        self.iat = iat
    }

    enum CodingKeys: String, CodingKey {
        case sub, name, exp, iat
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let number = try? container.decode(Int64.self, forKey: .sub) {
            sub = String(number)
        } else {
            sub = try container.decode(String.self, forKey: .sub)
        }
        name = try? container.decodeIfPresent(String.self, forKey: .name)
        exp = try container.decode(ExpirationClaim.self, forKey: .exp)
        iat = try? container.decodeIfPresent(IssuedAtClaim.self, forKey: .iat)
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}

/// Signs and verifies HS256 access tokens with `JWT_SECRET`.
struct TokenService: Sendable {
    let keys: JWTKeyCollection
    let lifetime: Duration

    init(secret: String, lifetime: Duration) async {
        self.keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.lifetime = lifetime
    }

    enum Failure: Error {
        case invalid
    }

    /// The user id, display-name claim and expiry of a valid token.
    func verify(_ token: String) async throws(Failure) -> (userID: Int64, name: String?, expiresAt: Date) {
        // Only HS256: a token naming any other algorithm (including "none") is refused
        // before its signature is looked at.
        guard let header = token.split(separator: ".", omittingEmptySubsequences: false).first,
            let headerData = Data(base64URLEncoded: String(header)),
            let fields = try? JSONDecoder().decode([String: JSONScalar].self, from: headerData),
            fields["alg"] == .string("HS256")
        else { throw .invalid }
        guard let claims = try? await keys.verify(token, as: AccessTokenClaims.self),
            let userID = Int64(claims.sub), userID > 0
        else { throw .invalid }
        return (userID, claims.name, claims.exp.value)
    }

    func issue(userID: Int64, name: String, now: Date = Date()) async throws -> String {
        let seconds = Double(lifetime.components.seconds)
        let claims = AccessTokenClaims(
            sub: String(userID), name: name, exp: ExpirationClaim(value: now.addingTimeInterval(seconds)),
            iat: IssuedAtClaim(value: now))
        return try await keys.sign(claims)
    }
}

/// A JSON header value we care about (strings); anything else is kept opaque.
enum JSONScalar: Decodable, Equatable {
    case string(String)
    case other

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .string(text)
        } else {
            self = .other
        }
    }
}

extension Data {
    init?(base64URLEncoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64.append("=") }
        self.init(base64Encoded: base64)
    }
}
