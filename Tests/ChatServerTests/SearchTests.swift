import ChatCore
import Foundation
import Postgres
import Testing

@Suite struct SearchQueryTests {
    @Test func wordsAreSplitLowercasedAndDeduplicated() throws {
        let query = try SearchQuery("  Hello, WORLD! hello 안녕 a&b|c:* \\ 'x'  ")
        #expect(query.words == ["hello", "world", "안녕", "a", "b", "c", "x"])
        #expect(query.tsquery.contains("'hello':*"))
        #expect(query.infixTerms == ["안녕"])
    }

    @Test func hangulTermsGetBigramAlternatives() throws {
        let query = try SearchQuery("하세요 철")
        #expect(query.tsquery == "('하세요':* | ('~하세' & '~세요')) & '철':*")
        #expect(query.infixTerms == ["하세요"])  // one syllable: prefix only
    }

    @Test func blankAndOverlongQueriesAreInvalid() {
        #expect(throws: ChatError.self) { try SearchQuery("") }
        #expect(throws: ChatError.self) { try SearchQuery(" \n\t ") }
        #expect(throws: ChatError.self) { try SearchQuery(String(repeating: "가", count: 201)) }
        #expect(throws: Never.self) { try SearchQuery(String(repeating: "가", count: 200)) }
    }

    @Test func punctuationOnlyHasNoWords() throws {
        #expect(try SearchQuery("!!! ??? &|!():*\\").matchesNothing)
        #expect(try SearchQuery("abc " + String(repeating: "가", count: 70)).matchesNothing)  // a 210-byte word
        #expect(throws: ChatError.self) { try SearchQuery((1...17).map { "w\($0)" }.joined(separator: " ")) }
    }

    @Test func highlightIsTheMatchingWords() throws {
        #expect(try SearchQuery("안녕").highlight(in: "안녕하세요! 반갑습니다") == "안녕하세요")
        #expect(try SearchQuery("철수 hel").highlight(in: "김철수가 Hello, said hello") == "김철수가 Hello hello")
        #expect(try SearchQuery("zzz").highlight(in: "nothing here") == "")
    }
}

@Suite struct MessageSearchDocumentTests {
    @Test func asciiAndHangulTextGetsItsDocumentHere() throws {
        let text = try #require(MessageSearchDocument.text(of: "Hello, 김철수가 HELLO world! a-b"))
        let lexemes = Set(text.split(separator: " ").map(String.init))  // tsvector's input drops repeats
        #expect(lexemes == ["'a'", "'b'", "'hello'", "'world'", "'~김철'", "'~수가'", "'~철수'", "'김철수가'"])
        #expect(MessageSearchDocument.text(of: "!!! ...") == "")
        #expect(MessageSearchDocument.text(of: "") == "")
    }

    @Test func wordsOverTwoHundredBytesAreLeftOut() throws {
        #expect(MessageSearchDocument.text(of: String(repeating: "x", count: 201)) == "")
        #expect(MessageSearchDocument.text(of: String(repeating: "x", count: 200)) == "'\(String(repeating: "x", count: 200))'")
        // 67 syllables are 201 bytes: the word goes, its bigram stays.
        #expect(MessageSearchDocument.text(of: String(repeating: "가", count: 67)) == "'~가가'")
    }

    @Test func otherTextIsLeftToTheDatabase() {
        for text in ["café", "안녕 😊", "İstanbul", "ㄱㄴ", "привет", "tab\u{85}next", "日本語"] {
            #expect(MessageSearchDocument.text(of: text) == nil, "\(text)")
        }
    }

    /// The server's documents against `chat_search_document()` in the test database, for
    /// fixed texts and a thousand random ones over ASCII and a few syllables.
    @Test func theDatabaseComputesTheSameDocuments() async throws {
        let url = try #require(ProcessInfo.processInfo.environment["DATABASE_URL"])
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: url, poolSize: 1))
        defer { Task { await postgres.shutdown() } }
        try await withApp { _ in }  // migrated
        var texts = [
            "Hello, World!", "김철수가 보낸 Hello, World!", "UPPER lower MiXeD 0123 x_y a.b@c d'e f\\g", "~tilde~ ~가나",
            String(repeating: "가", count: 66), String(repeating: "가", count: 67), String(repeating: "a", count: 201),
            "tab\tnew\nline\r\u{7F}del \u{1}ctl", "", "   ", "!!!",
        ]
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("aZ09 .,!?'\"\\-_~:;()[]{}<>/|@#$%^&*+=`\t\n가나다힣")
        for _ in 0..<1000 {
            texts.append(String((0..<Int.random(in: 1...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }))
        }
        let documents = texts.compactMap(MessageSearchDocument.text(of:))
        try #require(documents.count == texts.count)
        let differing = try await postgres.query(
            """
            SELECT t.text, chat_search_document(t.text)::text AS expected, t.document
            FROM unnest(\(texts), \(documents)) AS t (text, document)
            WHERE chat_search_document(t.text) IS DISTINCT FROM t.document::tsvector
            """
        ).map { try $0.decode((String, String, String).self) }
        #expect(differing.isEmpty, "\(differing.prefix(5))")
    }

    /// An instance of the version before `sql/0014` (no documents argument) still sends while
    /// a deployment rolls, and its messages get the database's document.
    @Test func theSendSignatureBeforeDocumentsStillStores() async throws {
        let url = try #require(ProcessInfo.processInfo.environment["DATABASE_URL"])
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: url, poolSize: 1))
        defer { Task { await postgres.shutdown() } }
        try await withApp { api in
            let (alice, bob) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(alice, with: [bob])
            let sent = try await postgres.queryRow(
                """
                SELECT outcome, seq, message_id
                FROM chat_send_messages(\([room]), \([alice.id]), \(["Old Instance 안녕"]), \(["text"]),
                    \([String?.none]), \([String?.none]), \([Int64?.none]), \([String?.none]), \([Int64?.none]),
                    \([String?.none]), false)
                """)
            let (outcome, seq, id) = try sent.decode((String, Int64, Int64).self)
            #expect(outcome == "created" && seq >= 1)
            let same = try await postgres.queryRow(
                "SELECT search_document = chat_search_document('Old Instance 안녕') FROM messages WHERE message_id = \(id)")
            #expect(try same.decode(Bool.self, column: 0))
        }
    }
}

@Suite struct SearchTests {
    func ids(_ response: JSONResponse) -> [Int64] {
        response.list("messages").compactMap { ($0["message_id"] as? NSNumber)?.int64Value }
    }

    @Test func koreanPrefixInfixAndLatinCaseInsensitive() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser("김철수"), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let greeting = try #require(try await api.send(a, room, "안녕하세요! 반갑습니다 😊").int("message_id"))
            let chulsoo = try #require(try await api.send(b, room, "철수가 왔어요").int("message_id"))
            let kim = try #require(try await api.send(b, room, "김철수가 Hello World").int("message_id"))
            let deleted = try #require(try await api.send(a, room, "안녕 지워질 메시지").int("message_id"))
            _ = try await api.request(.delete, "/chat/rooms/\(room)/messages/\(deleted)/", token: a.token)
            let other = try await api.makeGroup(a, with: [b])
            try await api.send(a, other, "안녕 다른 방")

            func search(_ text: String, path: String? = nil) async throws -> JSONResponse {
                let encoded = text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
                return try await api.request(.get, "\(path ?? "/chat/rooms/\(room)/search/")?query=\(encoded)", token: a.token)
            }

            let hello = try await search("안녕")
            #expect(hello.status == .ok, "\(hello.raw)")
            expectKeys(hello.object, ["messages", "total_count", "has_more"])
            #expect(ids(hello) == [greeting])  // deleted and other-room messages never found
            let hit = try #require(hello.list("messages").first)
            expectKeys(hit, ["message_id", "sender_name", "message_content", "created_at", "highlight"])
            #expect(hit["highlight"] as? String == "안녕하세요")
            #expect(hit["sender_name"] as? String == "김철수")
            expectTimestamp(hit["created_at"])

            #expect(ids(try await search("철수")) == [kim, chulsoo])  // prefix and inside a word, newest first
            #expect(ids(try await search("하세요")) == [greeting])
            #expect(ids(try await search("hello")) == [kim])
            #expect(ids(try await search("WORL")) == [kim])
            #expect(ids(try await search("철수 world")) == [kim])  // every term must match
            #expect(ids(try await search("수왔")).isEmpty)  // bigrams across words do not count
            #expect(try await search("철수").list("messages").first?["highlight"] as? String == "김철수가")

            let paged = try await api.request(.get, "/chat/rooms/\(room)/search/?query=%EC%B2%A0%EC%88%98&size=1", token: a.token)
            #expect(ids(paged) == [kim])
            #expect(paged.int("total_count") == 2)
            #expect(paged["has_more"] as? Bool == true)

            // Across rooms: each hit carries its room.
            let everywhere = try await search("안녕", path: "/chat/search/")
            #expect(everywhere.status == .ok)
            #expect(everywhere.int("total_count") == 2)
            #expect(Set(everywhere.list("messages").compactMap { ($0["room_id"] as? NSNumber)?.int64Value }) == [room, other])
        }
    }

    @Test func hostileQueriesAreJustText() async throws {
        try await withApp { api in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            try await api.send(a, room, "it's a & b | c: don't (panic) * \\ \"quoted\"")
            let hostile = [
                "'", "\"", "&", "|", "!", "(", ")", ":", "*", "\\", "a & b", "don't", "'; DROP TABLE messages; --",
                "!!!", "():*", "a:*", "(((", String(repeating: "x", count: 200), String(repeating: "가", count: 200),
                "\u{0}", "%", "_", "<->", "a <-> b",
            ]
            for text in hostile {
                let encoded = text.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                let response = try await api.request(.get, "/chat/rooms/\(room)/search/?query=\(encoded)", token: a.token)
                #expect(response.status == .ok, "\(text): \(response.raw)")
            }
            let quoted = try await api.request(.get, "/chat/rooms/\(room)/search/?query=don%27t%20panic", token: a.token)
            #expect(quoted.int("total_count") == 1)
            for query in ["", "%20%20", "query=x&size=0", "size=101"] {
                let path = query.contains("=") ? "?\(query)" : "?query=\(query)"
                let response = try await api.request(.get, "/chat/rooms/\(room)/search/\(path)", token: a.token)
                #expect(response.status == .unprocessableContent, "\(query)")
            }
            #expect(try await api.request(.get, "/chat/rooms/\(room)/search/", token: a.token).status == .unprocessableContent)
            let outsider = try await api.makeUser()
            #expect(try await api.request(.get, "/chat/rooms/\(room)/search/?query=a", token: outsider.token).status == .forbidden)
        }
    }
}
