import Foundation

/// A `.env` file: `KEY=value` lines, `#` comments, optional `export ` and quotes. Its values
/// fill in keys the process environment does not set (the environment wins).
public enum DotEnv {
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// `environment` with the keys of the file at `path` that it lacks; unchanged when there is no file.
    public static func merged(into environment: [String: String], file path: String) throws -> [String: String] {
        guard FileManager.default.fileExists(atPath: path) else { return environment }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Invalid(description: "cannot read \(path): \(error.localizedDescription)")
        }
        var merged = environment
        for (key, value) in try parse(text, file: path) where environment[key] == nil {
            merged[key] = value
        }
        return merged
    }

    static func parse(_ text: String, file: String = ".env") throws -> [(String, String)] {
        var pairs: [(String, String)] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine.trimmingCharacters(in: .whitespacesAndNewlines))
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst(7).drop(while: { $0 == " " }) }
            guard let equals = line.firstIndex(of: "=") else {
                throw Invalid(description: "\(file):\(index + 1): expected KEY=value")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            guard let first = key.first, first == "_" || (first.isASCII && first.isLetter),
                key.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) })
            else {
                throw Invalid(description: "\(file):\(index + 1): expected KEY=value")
            }
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if let quote = value.first, quote == "\"" || quote == "'" {
                guard value.count >= 2, value.last == quote else {
                    throw Invalid(description: "\(file):\(index + 1): unterminated quote in \(key)")
                }
                value = String(value.dropFirst().dropLast())
            } else if let comment = value.range(of: " #") {
                value = value[..<comment.lowerBound].trimmingCharacters(in: .whitespaces)
            }
            pairs.append((key, value))
        }
        return pairs
    }
}
