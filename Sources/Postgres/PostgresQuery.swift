/// A SQL statement with its bound parameters.
///
/// Built by string interpolation: every interpolated value becomes a `$N` placeholder and
/// a bind, so values never reach the SQL text.
///
///     let query: PostgresQuery = "SELECT name FROM users WHERE id = \(userID)"
///
/// The only way to splice raw text is the explicitly named `\(unescaped: ...)`.
public struct PostgresQuery: Sendable, Hashable, ExpressibleByStringInterpolation {
    public var sql: String
    public var binds: PostgresBindings

    public init(unsafeSQL sql: String, binds: PostgresBindings = PostgresBindings()) {
        self.sql = sql
        self.binds = binds
    }

    public init(stringLiteral value: String) {
        self.sql = value
        self.binds = PostgresBindings()
    }

    public init(stringInterpolation: StringInterpolation) {
        self.sql = stringInterpolation.sql
        self.binds = stringInterpolation.binds
    }

    /// Adds `offset` to every `$N` placeholder outside quoted literals, quoted identifiers
    /// and comments. (Backslash escapes of `E'...'` strings are not understood.)
    static func renumberPlaceholders(in sql: String, by offset: Int) -> String {
        guard offset > 0 else { return sql }
        var result = ""
        result.reserveCapacity(sql.utf8.count + 8)
        var quote: Character?
        var index = sql.startIndex
        while index < sql.endIndex {
            let character = sql[index]
            if let open = quote {
                if character == open { quote = nil }
                result.append(character)
                index = sql.index(after: index)
            } else if sql[index...].hasPrefix("--") {
                let end = sql[index...].firstIndex(of: "\n") ?? sql.endIndex
                result.append(contentsOf: sql[index..<end])
                index = end
            } else if sql[index...].hasPrefix("/*") {
                let rest = sql[sql.index(index, offsetBy: 2)...]
                let end = rest.range(of: "*/")?.upperBound ?? sql.endIndex
                result.append(contentsOf: sql[index..<end])
                index = end
            } else if character == "'" || character == "\"" {
                quote = character
                result.append(character)
                index = sql.index(after: index)
            } else if character == "$", case let digits = sql[sql.index(after: index)...].prefix(while: \.isASCIIDigit),
                !digits.isEmpty, let number = Int(digits)
            {
                result.append("$\(number + offset)")
                index = digits.endIndex
            } else {
                result.append(character)
                index = sql.index(after: index)
            }
        }
        return result
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        public var sql: String
        public var binds: PostgresBindings

        public init(literalCapacity: Int, interpolationCount: Int) {
            self.sql = ""
            self.sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            self.binds = PostgresBindings(capacity: interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql.append(literal)
        }

        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value) {
            binds.append(value)
            sql.append("$\(binds.count)")
        }

        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            binds.append(value)
            sql.append("$\(binds.count)")
        }

        /// Splices raw SQL text. Never pass user input here.
        public mutating func appendInterpolation(unescaped text: String) {
            sql.append(text)
        }

        /// Embeds another query as a fragment: its binds follow this query's, and its
        /// placeholders are renumbered. (Fragments must not contain dollar-quoted text.)
        public mutating func appendInterpolation(_ fragment: PostgresQuery) {
            sql.append(PostgresQuery.renumberPlaceholders(in: fragment.sql, by: binds.count))
            binds.append(contentsOf: fragment.binds)
        }
    }
}

/// The parameters of a query, in text format with their type OIDs.
public struct PostgresBindings: Sendable, Hashable {
    public private(set) var values: [String?] = []
    public private(set) var types: [UInt32] = []

    public init() {}

    public init(capacity: Int) {
        values.reserveCapacity(capacity)
        types.reserveCapacity(capacity)
    }

    public var count: Int { values.count }

    public mutating func append<Value: PostgresEncodable>(_ value: Value) {
        values.append(value.postgresText)
        types.append(Value.postgresType.oid)
    }

    public mutating func append<Value: PostgresEncodable>(_ value: Value?) {
        values.append(value?.postgresText)
        types.append(Value.postgresType.oid)
    }

    public mutating func append(contentsOf other: PostgresBindings) {
        values.append(contentsOf: other.values)
        types.append(contentsOf: other.types)
    }
}
