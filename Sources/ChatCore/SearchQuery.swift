/// A user's search text turned into what the database needs. Pure: no database access.
///
/// Words are runs between whitespace and punctuation, lower-cased, as `chat_search_words`
/// in `sql/0002_search.sql` splits messages; `SearchStore` replaces the words split here by
/// the ones that function returns, so both sides always agree. A word contains no
/// separator, hence no quote or operator, and needs no escaping inside a tsquery. Every
/// word must match:
/// - as a prefix of a word of the message (`안녕` finds `안녕하세요`, `hel` finds `Hello`);
/// - a word of two or more Hangul syllables also inside a word (`철수` finds `김철수가`),
///   through the indexed syllable bigrams, rechecked against the text (`infixTerms`).
public struct SearchQuery: Sendable, Equatable {
    public static let maxLength = 200
    public static let maxWords = 16

    /// Longest word the index keeps (bytes of UTF-8), as in `chat_search_words`.
    public static let maxWordBytes = 200

    /// The trimmed text.
    public let text: String
    /// The normalised words, without repeats.
    public private(set) var words: [String]

    /// Parses the `query` parameter: 1–200 characters after trimming and at most 16
    /// words, else `.invalid`.
    public init(_ text: String) throws(ChatError) {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { throw .invalid("query must not be empty") }
        guard trimmed.unicodeScalars.count <= Self.maxLength else {
            throw .invalid("query must be at most \(Self.maxLength) characters")
        }
        var words: [String] = []
        for word in Self.splitWords(trimmed) where !words.contains(word) { words.append(word) }
        guard words.count <= Self.maxWords else { throw .invalid("query may have at most \(Self.maxWords) words") }
        self.text = trimmed
        self.words = words
    }

    /// The same query with the words the database split from `text`.
    public func withWords(_ words: [String]) -> SearchQuery {
        var copy = self
        copy.words = words
        return copy
    }

    /// True when nothing can match: no word characters at all (only punctuation), or a
    /// word longer than the index keeps.
    public var matchesNothing: Bool {
        words.isEmpty || words.contains { $0.utf8.count > Self.maxWordBytes }
    }

    /// The tsquery text (`'안녕':* & ('철수':* | '~철수')`), cast with `::tsquery`: the words
    /// are already normalised, and a configuration would strip the bigram mark.
    public var tsquery: String {
        words.map { word in
            let prefix = "'\(word)':*"
            guard Self.isHangulInfixTerm(word) else { return prefix }
            let bigrams = Self.bigrams(of: word).map { "'~\($0)'" }.joined(separator: " & ")
            return "(\(prefix) | (\(bigrams)))"
        }.joined(separator: " & ")
    }

    /// Words that may have matched through bigrams: the message text must contain each.
    public var infixTerms: [String] { words.filter(Self.isHangulInfixTerm) }

    /// The words of `content` that match the query, separated by a space (never the
    /// whole content unless it is a single word).
    public func highlight(in content: String) -> String {
        var matched: [String] = []
        for token in content.split(whereSeparator: { $0.isWhitespace }) {
            let display = String(token).trimmingPunctuation()
            guard !display.isEmpty, !matched.contains(display) else { continue }
            let lowered = display.lowercased()
            let pieces = Self.splitWords(display)
            let hit = words.contains { word in
                pieces.contains { $0.hasPrefix(word) } || (Self.isHangulInfixTerm(word) && lowered.contains(word))
            }
            if hit { matched.append(display) }
        }
        return matched.joined(separator: " ")
    }

    // MARK: Word rules (mirror sql/0002_search.sql)

    static func isSeparator(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x20, 0x7F, 0x85: return true  // controls and space (\s), NUL included
        case 0x21...0x2F, 0x3A...0x40, 0x5B...0x60, 0x7B...0x7E: return true  // ASCII punctuation
        case 0xA0...0xBF, 0x1680, 0x2000...0x206F, 0x3000...0x303F, 0xFF01...0xFF0F, 0xFF1A...0xFF20: return true
        default: return false
        }
    }

    static func splitWords(_ text: String) -> [String] {
        var words: [String] = []
        var current = String.UnicodeScalarView()
        func flush() {
            if !current.isEmpty {
                words.append(String(current).lowercased())
                current = String.UnicodeScalarView()
            }
        }
        for scalar in text.unicodeScalars {
            if isSeparator(scalar) { flush() } else { current.append(scalar) }
        }
        flush()
        return words
    }

    static func isHangulSyllable(_ scalar: Unicode.Scalar) -> Bool {
        (0xAC00...0xD7A3).contains(scalar.value)
    }

    static func isHangulInfixTerm(_ word: String) -> Bool {
        word.unicodeScalars.count >= 2 && word.unicodeScalars.allSatisfy(isHangulSyllable)
    }

    static func bigrams(of word: String) -> [String] {
        let scalars = Array(word.unicodeScalars)
        var result: [String] = []
        for index in 0..<(scalars.count - 1) {
            let bigram = String(String.UnicodeScalarView([scalars[index], scalars[index + 1]]))
            if !result.contains(bigram) { result.append(bigram) }
        }
        return result
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[start...end])
    }

    func trimmingPunctuation() -> String {
        let scalars = unicodeScalars
        let keep: (Unicode.Scalar) -> Bool = { !SearchQuery.isSeparator($0) }
        guard let start = scalars.firstIndex(where: keep), let end = scalars.lastIndex(where: keep) else { return "" }
        return String(scalars[start...end])
    }
}
