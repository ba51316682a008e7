import Foundation
import JWTKit

/// Mints access tokens like the server's (HS256; claims sub, name, exp, iat).
public enum TestToken {
    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var name: String?
        var exp: ExpirationClaim
        var iat: IssuedAtClaim

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// An HS256 token for `userID` signed with `secret`. A negative `expiresIn` makes an expired token.
    public static func make(
        secret: String, userID: Int64, name: String? = nil, expiresIn: TimeInterval = 3600
    ) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let claims = Claims(
            sub: SubjectClaim(value: String(userID)),
            name: name,
            exp: ExpirationClaim(value: now.addingTimeInterval(expiresIn)),
            iat: IssuedAtClaim(value: now))
        return try await keys.sign(claims)
    }
}
