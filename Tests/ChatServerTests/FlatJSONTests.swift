import ChatCore
import Foundation
import Testing

@testable import ChatServer

/// The send body's fast path (`FlatJSON`) against `JSONDecoder`, the decoder it stands in for:
/// whatever the fast path accepts, `JSONDecoder` accepts and reads the same way.
@Suite struct FlatJSONTests {
    typealias Body = MessageController.SendMessageRequest

    func fast(_ text: String) -> Body? {
        Array(text.utf8).withUnsafeBytes { FlatJSON.parse($0) }.flatMap(Body.init(flatJSON:))
    }

    func slow(_ text: String) -> Body? {
        try? ChatJSON.decoder().decode(Body.self, from: Data(text.utf8))
    }

    @Test(arguments: [
        #"{"message_content":"hello"}"#,
        #" { "message_content" : "안녕하세요 😊", "message_type": "text", "client_message_id": "c-1", "reply_to_message_id": 42 } "#,
        #"{"message_content":"a\"b\\c\/d\b\f\n\r\t e","reply_to_message_id":-7}"#,
        #"{"message_content":"\u00e9\u4E2D\ud83d\ude00","message_type":null,"client_message_id":null}"#,
        #"{"message_content":"x","reply_to_message_id":9223372036854775807}"#,
        #"{}"#,
    ])
    func readsWhatJSONDecoderReads(body: String) throws {
        let read = try #require(fast(body), "the fast path should take \(body)")
        #expect(read == slow(body))
    }

    @Test(arguments: [
        #"{"message_content":"x","message_content":"y"}"#,  // repeated key
        #"{"message_content":"x","extra":1}"#,  // another key: JSONDecoder decides
        #"{"messageContent":"x"}"#,
        #"{"message_content":5}"#,  // a wrong type: JSONDecoder words the error
        #"{"message_content":"x","reply_to_message_id":1.0}"#,
        #"{"message_content":"x","reply_to_message_id":1e3}"#,
        #"{"message_content":"x","reply_to_message_id":01}"#,
        #"{"message_content":"x","reply_to_message_id":9223372036854775808}"#,
        #"{"message_content":"x","reply_to_message_id":"1"}"#,
        #"{"message_content":["x"]}"#,
        #"{"message_content":"\ud83d"}"#,  // a lone surrogate
        #"{"message_content":"\x"}"#,
        #"{"message_content":"x",}"#,
        #"{"message_content":"x"} 1"#,
        #"[{"message_content":"x"}]"#,
        #"{"message_content":"x""#,
        "{\"message_content\":\"tab\there\"}",  // a raw control character
        "",
    ])
    func leavesAnythingElseToJSONDecoder(body: String) {
        #expect(fast(body) == nil)
    }

    /// Random bodies, valid and broken: the fast path never accepts one that JSONDecoder
    /// refuses or reads differently.
    @Test func agreesWithJSONDecoderOnRandomBodies() {
        var generator = SystemRandomNumberGenerator()
        let keys = ["message_content", "message_type", "reply_to_message_id", "client_message_id", "other"]
        let strings = [
            "plain", "", "안녕", "😊", #"q\"uote"#, #"back\\slash"#, #"\u0041\u00e9"#, #"\ud83d\ude00"#, #"\n\t"#, "/",
        ]
        let values = strings.map { "\"\($0)\"" } + ["0", "-1", "12345678901", "null", "true", "1.5", "[]", "{}", "\"\\x\""]
        var taken = 0
        for _ in 0..<3000 {
            var fields: [String] = []
            for key in keys.shuffled(using: &generator).prefix(Int.random(in: 0...4, using: &generator)) {
                fields.append("\"\(key)\":\(values.randomElement(using: &generator)!)")
            }
            var body = "{" + fields.joined(separator: Bool.random(using: &generator) ? "," : " , ") + "}"
            if Int.random(in: 0..<4, using: &generator) == 0, !body.isEmpty {
                // Break it: cut it short, or put a byte somewhere.
                var bytes = Array(body.utf8)
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                if Bool.random(using: &generator) { bytes.removeSubrange(at...) } else { bytes.insert(Array(",:{}\"x ".utf8).randomElement(using: &generator)!, at: at) }
                body = String(decoding: bytes, as: UTF8.self)
            }
            if let read = fast(body) {
                taken += 1
                #expect(read == slow(body), "\(body)")
            }
        }
        #expect(taken > 100)
    }
}
