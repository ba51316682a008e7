/// A message's search document computed here instead of in PostgreSQL, where that is exact.
///
/// `chat_search_document()` (`sql/0002_search.sql`, `sql/0006_send_path.sql`) is the words of
/// the text, lower-cased, split at whitespace and punctuation, at most 200 bytes each, plus
/// every pair of adjacent Hangul syllables marked with `~`. Its word splitting is a SQL
/// function PostgreSQL cannot inline, so the database parses and plans it again for every
/// message it stores (`sql/0014_send_path_search_documents.sql`). For text made of ASCII and
/// Hangul syllables only, the most common chat text, the same document is computed here (the
/// separators are `SearchQuery`'s, lower-casing is ASCII's, Hangul has no case) and handed
/// to the send statement as tsvector text; any other text is left to the database, which
/// computes it as before. Pure: no database access.
public enum MessageSearchDocument {
    /// The document of `content` in tsvector's text form (`'hello' 'world' '~안녕'`), or nil
    /// when the content has a character outside ASCII and Hangul syllables: the database
    /// computes that one itself.
    public static func text(of content: String) -> String? {
        // Repeated words are left in (tsvector's input sorts the lexemes and keeps one of
        // each); repeated bigrams, which a long run of syllables has many of, are not.
        // No lexeme holds a quote or a backslash (both are separators), so quoting needs no
        // escapes.
        var text = ""
        text.reserveCapacity(content.utf8.count * 2 + 8)
        func append<Lexeme: Sequence<Unicode.Scalar>>(_ lexeme: Lexeme) {
            if !text.isEmpty { text.append(" ") }
            text.append("'")
            text.unicodeScalars.append(contentsOf: lexeme)
            text.append("'")
        }
        var word = String.UnicodeScalarView()
        var wordBytes = 0  // UTF-8: 1 per ASCII character, 3 per Hangul syllable
        func endWord() {
            if !word.isEmpty && wordBytes <= SearchQuery.maxWordBytes { append(word) }
            word.removeAll(keepingCapacity: true)
            wordBytes = 0
        }
        var previousSyllable: Unicode.Scalar?
        var bigrams = Set<UInt64>()
        for scalar in content.unicodeScalars {
            switch scalar.value {
            case 0x00..<0x80:
                previousSyllable = nil
                if SearchQuery.isSeparator(scalar) {
                    endWord()
                } else {
                    let isUpper = (0x41...0x5A).contains(scalar.value)
                    word.append(isUpper ? Unicode.Scalar(UInt8(scalar.value + 0x20)) : scalar)
                    wordBytes += 1
                }
            case 0xAC00...0xD7A3:
                word.append(scalar)
                wordBytes += 3
                if let previousSyllable, bigrams.insert(UInt64(previousSyllable.value) << 32 | UInt64(scalar.value)).inserted {
                    append([Unicode.Scalar("~"), previousSyllable, scalar])
                }
                previousSyllable = scalar
            default:
                return nil
            }
        }
        endWord()
        return text
    }
}
