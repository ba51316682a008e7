import Foundation
import JWTKit

/// The claims of an access token. `sub` may be a string or a number (tokens can come from
/// another service sharing the secret); `exp` is required.
struct AccessTokenClaims: JWTPayload {
    var sub: String
    var name: String?
    var exp: ExpirationClaim
    var iat: IssuedAtClaim?
    /// Not before: a token whose `nbf` is still in the future is refused.
    var nbf: NotBeforeClaim?

    init(sub: String, name: String?, exp: ExpirationClaim, iat: IssuedAtClaim?) {
        self.sub = sub
        self.name = name
        self.exp = exp
        self.iat = iat
    }

    enum CodingKeys: String, CodingKey {
        case sub, name, exp, iat, nbf
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
        nbf = try container.decodeIfPresent(NotBeforeClaim.self, forKey: .nbf)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sub, forKey: .sub)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encode(exp, forKey: .exp)
        try container.encodeIfPresent(iat, forKey: .iat)
        try container.encodeIfPresent(nbf, forKey: .nbf)
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf?.verifyNotBefore()
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
        // before its signature is looked at. So is one with critical header extensions
        // (`crit`): this server implements none, and RFC 7515 says to reject them.
        guard let header = token.split(separator: ".", omittingEmptySubsequences: false).first,
            let headerData = Data(base64URLEncoded: String(header)),
            let fields = try? JSONDecoder().decode([String: JSONScalar].self, from: headerData),
            fields["alg"] == .string("HS256"), fields["crit"] == nil
        else { throw .invalid }
        guard let claims = try? await keys.verify(token, as: AccessTokenClaims.self),
            let userID = Int64(claims.sub), userID > 0
        else { throw .invalid }
        return (userID, claims.name, claims.exp.value)
    }

    /// `iat` and `exp` are whole seconds (NumericDate integers), so clients that read them as
    /// integers (Dart's `exp as int`) can.
    func issue(userID: Int64, name: String, now: Date = Date()) async throws -> String {
        let seconds = Double(lifetime.components.seconds)
        let issuedAt = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let claims = AccessTokenClaims(
            sub: String(userID), name: name, exp: ExpirationClaim(value: issuedAt.addingTimeInterval(seconds)),
            iat: IssuedAtClaim(value: issuedAt))
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
