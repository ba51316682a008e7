import CLibPQ

/// Owns a `PGresult`; freed when the last reference goes away. A result is immutable once
/// received, so reading it from any thread is safe.
final class ResultHandle: @unchecked Sendable {
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        PQclear(pointer)
    }
}

/// The rows returned by a statement.
public struct PostgresRows: Sendable, RandomAccessCollection {
    let handle: ResultHandle
    /// Column names in order.
    public let columns: [String]
    /// Rows affected by INSERT/UPDATE/DELETE (from the command tag), else the row count.
    public let affectedRows: Int

    init(handle: ResultHandle) {
        self.handle = handle
        let count = Int(PQnfields(handle.pointer))
        self.columns = (0..<count).map { String(cString: PQfname(handle.pointer, Int32($0))) }
        let tag = String(cString: PQcmdTuples(handle.pointer))
        self.affectedRows = Int(tag) ?? Int(PQntuples(handle.pointer))
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { Int(PQntuples(handle.pointer)) }

    public subscript(position: Int) -> PostgresRow {
        PostgresRow(rows: self, index: position)
    }

    /// The single row of the result; throws unless there is exactly one.
    public func one() throws(PostgresError) -> PostgresRow {
        guard count == 1 else {
            throw PostgresError(.unexpectedRowCount, message: "expected exactly one row, got \(count)")
        }
        return self[0]
    }

    /// The row of the result, or nil when empty; throws when there is more than one.
    public func oneOrNone() throws(PostgresError) -> PostgresRow? {
        guard count <= 1 else {
            throw PostgresError(.unexpectedRowCount, message: "expected at most one row, got \(count)")
        }
        return first
    }

    func columnIndex(_ name: String) -> Int? {
        columns.firstIndex(of: name)
    }
}

/// One row of a result. Columns are decoded by position or by name into Swift types.
public struct PostgresRow: Sendable {
    let rows: PostgresRows
    let index: Int

    public var columns: [String] { rows.columns }

    public func isNull(_ column: Int) -> Bool {
        PQgetisnull(rows.handle.pointer, Int32(index), Int32(column)) == 1
    }

    /// Decodes the column at `column` (0-based).
    public func decode<T: PostgresDecodable>(_ type: T.Type, column: Int) throws(PostgresError) -> T {
        let pointer = rows.handle.pointer
        guard column >= 0, column < rows.columns.count else {
            throw PostgresError(.decoding, message: "no column \(column) in result of \(rows.columns.count) columns")
        }
        if PQgetisnull(pointer, Int32(index), Int32(column)) == 1 {
            guard let null = T.postgresNull else {
                throw PostgresError(
                    .decoding, message: "column '\(rows.columns[column])' is NULL, cannot decode as \(T.self)",
                    column: rows.columns[column])
            }
            return null
        }
        let length = Int(PQgetlength(pointer, Int32(index), Int32(column)))
        let base = UnsafeRawPointer(PQgetvalue(pointer, Int32(index), Int32(column))!)
        guard let value = T.decode(postgresText: UnsafeRawBufferPointer(start: base, count: length)) else {
            throw PostgresError(
                .decoding,
                message: "column '\(rows.columns[column])' of type oid \(PQftype(pointer, Int32(column))) "
                    + "cannot be decoded as \(T.self)",
                column: rows.columns[column])
        }
        return value
    }

    /// Decodes the column named `name`.
    public func decode<T: PostgresDecodable>(_ type: T.Type, _ name: String) throws(PostgresError) -> T {
        guard let column = rows.columnIndex(name) else {
            throw PostgresError(.decoding, message: "no column named '\(name)' in result", column: name)
        }
        return try decode(type, column: column)
    }

    /// Decodes the leading columns as a tuple: `let (id, name) = try row.decode((Int64, String).self)`.
    public func decode<each T: PostgresDecodable>(_ types: (repeat each T).Type) throws -> (repeat each T) {
        var column = 0
        func next<U: PostgresDecodable>(_ type: U.Type) throws -> U {
            defer { column += 1 }
            return try decode(type, column: column)
        }
        return (repeat try next((each T).self))
    }
}
