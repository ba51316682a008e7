import Logging
import Postgres

/// Users: registered accounts and users known from tokens.
public struct UserStore: Sendable {
    let db: PostgresClient
    let logger: Logger

    public init(db: PostgresClient, logger: Logger) {
        self.db = db
        self.logger = logger
    }

    /// Creates an account with a (bcrypt) password hash. A name taken up to case and
    /// compatibility forms (sql/0010) is `.conflict`.
    public func register(name: String, passwordHash: String) async throws -> User {
        // chat_next_user_id() skips ids that token users hold; a token user created with
        // the chosen id between its check and this insert is the one collision left: retry.
        for _ in 0..<5 {
            do {
                let row = try await db.queryRow(
                    """
                    INSERT INTO users (user_name, password_hash) VALUES (\(name), \(passwordHash))
                    RETURNING user_id, user_name, is_active, created_at
                    """)
                return try User(row: row)
            } catch let error as PostgresError where error.isUniqueViolation && error.constraint == "users_pkey" {
                continue
            } catch let error as PostgresError where error.isUniqueViolation {
                throw ChatError.conflict("user_name is already taken")
            }
        }
        throw PostgresError(.server, message: "could not allocate a user id")
    }

    /// The active account registered under `name` and its password hash.
    public func loginAccount(name: String) async throws -> (user: User, passwordHash: String)? {
        guard
            let row = try await db.queryOptionalRow(
                """
                SELECT user_id, user_name, is_active, created_at, password_hash FROM users
                WHERE user_name = \(name) AND password_hash IS NOT NULL AND is_active
                """)
        else { return nil }
        return (try User(row: row), try row.decode(String.self, "password_hash"))
    }

    /// Replaces a password hash, unless it changed meanwhile (a concurrent login did it).
    public func replacePasswordHash(userID: Int64, old: String, new: String) async throws {
        try await db.execute(
            "UPDATE users SET password_hash = \(new) WHERE user_id = \(userID) AND password_hash = \(old)")
    }

    public func user(id: Int64) async throws -> User? {
        try await db.queryOptionalRow(
            "SELECT user_id, user_name, is_active, created_at FROM users WHERE user_id = \(id)"
        ).map(User.init(row:))
    }

    /// The user a valid token names: created on first sight (named from the token's `name`
    /// claim, else `user<ID>`), renamed when the claim changes.
    public func userFromToken(id: Int64, claimedName: String?) async throws -> User {
        let name = Validation.claimedName(claimedName)
        if let user = try await user(id: id) {
            guard let name, name != user.name else { return user }
            do {
                try await db.execute(
                    "UPDATE users SET user_name = \(name), updated_at = now() WHERE user_id = \(id)")
            } catch let error as PostgresError where error.isUniqueViolation {
                // Another account logs in with that name; keep this one's name.
                logger.notice("token name claim collides with a login name", metadata: ["chat.user_id": "\(id)"])
                return user
            }
            var renamed = user
            renamed.name = name
            return renamed
        }
        let row = try await db.queryRow(
            """
            INSERT INTO users (user_id, user_name) VALUES (\(id), \(name ?? "user\(id)"))
            ON CONFLICT (user_id) DO UPDATE SET user_name = users.user_name
            RETURNING user_id, user_name, is_active, created_at
            """)
        return try User(row: row)
    }
}
