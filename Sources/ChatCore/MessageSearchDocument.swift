/// A message's search document computed here instead of in PostgreSQL, where that is exact.
///
/// `chat_search_document()` (`sql/0002_search.sql`, `sql/0006_send_path.sql`) is the words of
/// the text, lower-cased, split at whitespace and punctuation, at most 200 bytes each, plus
/// every pair of adjacent Hangul syllables marked with `~`. Its word splitting is a SQL
/// function PostgreSQL cannot inline, so the database parses and plans it again for every
/// message it stores (`sql/0014_send_path_search_documents.sql`). For text made of ASCII and
/// Hangul syllables only, the most common chat text, the same document is computed here (of
/// ASCII, `SearchQuery`'s separators leave letters and digits as word characters; lower-casing
/// is ASCII's; Hangul has no case) and handed
/// to the send statement as tsvector text; any other text is left to the database, which
/// computes it as before. Pure: no database access.
public enum MessageSearchDocument {
    /// The document of `content` in tsvector's text form (`'hello' 'world' '~안녕'`), or nil
    /// when the content has a character outside ASCII and Hangul syllables: the database
    /// computes that one itself.
    public static func text(of content: String) -> String? {
        // By UTF-8 byte. ASCII word characters are exactly the letters and digits (every other
        // ASCII character is a separator); a Hangul syllable is three bytes, U+AC00 EA B0 80
        // to U+D7A3 ED 9E A3. Repeated words are left in (tsvector's input sorts the lexemes
        // and keeps one of each); repeated bigrams, which a long run of syllables has many
        // of, are not. No lexeme holds a quote or a backslash (both are separators), so
        // quoting needs no escapes.
        var text: [UInt8] = []
        var word: [UInt8] = []
        var bigrams = Set<UInt32>()
        var previousSyllable: UInt32?
        func endWord() {
            if !word.isEmpty && word.count <= SearchQuery.maxWordBytes { appendLexeme(word, to: &text) }
            word.removeAll(keepingCapacity: true)
        }
        var bytes = content.utf8.makeIterator()
        while let byte = bytes.next() {
            if byte < 0x80 {
                previousSyllable = nil
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): word.append(byte)
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): word.append(byte + 0x20)
                default: endWord()
                }
                continue
            }
            // Only a three-byte sequence can be a syllable; the String is valid UTF-8.
            guard byte & 0xF0 == 0xE0, let second = bytes.next(), let third = bytes.next() else { return nil }
            let scalar = UInt32(byte & 0x0F) << 12 | UInt32(second & 0x3F) << 6 | UInt32(third & 0x3F)
            guard (0xAC00...0xD7A3).contains(scalar) else { return nil }
            word.append(contentsOf: [byte, second, third])
            if let previous = previousSyllable, bigrams.insert(previous << 16 | scalar).inserted {
                appendLexeme(Array(word[(word.count - 6)...]), marked: true, to: &text)
            }
            previousSyllable = scalar
        }
        endWord()
        return String(decoding: text, as: UTF8.self)
    }

    /// `'lexeme'` (or `'~lexeme'`), after a space unless it is the first.
    private static func appendLexeme(_ lexeme: [UInt8], marked: Bool = false, to text: inout [UInt8]) {
        if !text.isEmpty { text.append(UInt8(ascii: " ")) }
        text.append(UInt8(ascii: "'"))
        if marked { text.append(UInt8(ascii: "~")) }
        text.append(contentsOf: lexeme)
        text.append(UInt8(ascii: "'"))
    }
}
