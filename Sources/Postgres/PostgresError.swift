/// An error from the database layer.
///
/// `description` is deliberately vague so that it can be shown to clients or written to
/// access logs without revealing SQL, schema or bound values; `debugDescription` carries
/// everything (SQLSTATE, server message, detail, constraint) for operators.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Could not open a connection (server down, bad credentials, bad URL).
        case connectionFailed
        /// The connection broke while a statement was in flight.
        case connectionClosed
        /// The server rejected a statement; `sqlState` says why.
        case server
        /// No pooled connection became free within the pool's wait timeout.
        case poolTimeout
        /// The pool has been shut down.
        case poolClosed
        /// A column could not be decoded as the requested Swift type.
        case decoding
        /// A helper expecting one row (or at most one) got another count.
        case unexpectedRowCount
    }

    public var kind: Kind
    /// The five-character SQLSTATE for `.server` errors (e.g. `23505`).
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var hint: String?
    public var constraint: String?
    public var table: String?
    public var column: String?

    public init(
        _ kind: Kind, message: String, sqlState: String? = nil, detail: String? = nil, hint: String? = nil,
        constraint: String? = nil, table: String? = nil, column: String? = nil
    ) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.table = table
        self.column = column
    }

    public var description: String {
        switch kind {
        case .connectionFailed, .connectionClosed: "database connection error"
        case .server: "database error"
        case .poolTimeout: "database busy"
        case .poolClosed: "database pool closed"
        case .decoding: "database decoding error"
        case .unexpectedRowCount: "unexpected number of database rows"
        }
    }

    public var debugDescription: String {
        var parts = ["PostgresError(\(kind)", "message: \(message)"]
        if let sqlState { parts.append("sqlstate: \(sqlState)") }
        if let detail { parts.append("detail: \(detail)") }
        if let hint { parts.append("hint: \(hint)") }
        if let constraint { parts.append("constraint: \(constraint)") }
        if let table { parts.append("table: \(table)") }
        if let column { parts.append("column: \(column)") }
        return parts.joined(separator: ", ") + ")"
    }

    /// True when the database could not be reached or the connection broke (whether a
    /// statement in flight took effect is then unknown).
    public var isConnectionLoss: Bool {
        switch kind {
        case .connectionFailed, .connectionClosed, .poolTimeout, .poolClosed: return true
        case .server:
            // Class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown,
            // cannot connect now), 25P03 (idle-in-transaction timeout, which ends the session).
            guard let sqlState else { return false }
            return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03", "25P03"].contains(sqlState)
        case .decoding, .unexpectedRowCount: return false
        }
    }

    /// True when the statement failed because the database is unreachable or too busy right
    /// now, not because of what it asked: the request may succeed later, and HTTP layers
    /// usually answer 503. Besides connection loss: 53300 (too many connections), 55P03 (a
    /// lock not granted within `lock_timeout`), 57014 (cancelled by `statement_timeout`) and
    /// 40P01 (chosen as a deadlock victim).
    public var isUnavailable: Bool {
        if isConnectionLoss { return true }
        guard kind == .server, let sqlState else { return false }
        return ["53300", "55P03", "57014", "40P01"].contains(sqlState)
    }
}

/// Well-known SQLSTATE codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
public enum SQLState {
    public static let uniqueViolation = "23505"
    public static let foreignKeyViolation = "23503"
    public static let notNullViolation = "23502"
    public static let checkViolation = "23514"
    public static let exclusionViolation = "23P01"
    public static let serializationFailure = "40001"
    public static let deadlockDetected = "40P01"
    public static let invalidTextRepresentation = "22P02"
    public static let numericValueOutOfRange = "22003"
    public static let stringDataRightTruncation = "22001"
    public static let characterNotInRepertoire = "22021"
    public static let undefinedTable = "42P01"
    public static let syntaxError = "42601"
    public static let queryCanceled = "57014"
}

extension PostgresError {
    public var isUniqueViolation: Bool { sqlState == SQLState.uniqueViolation }
    public var isForeignKeyViolation: Bool { sqlState == SQLState.foreignKeyViolation }
    public var isCheckViolation: Bool { sqlState == SQLState.checkViolation }
    /// SQLSTATE class 23: any integrity constraint violation.
    public var isIntegrityViolation: Bool { sqlState?.hasPrefix("23") ?? false }
}
