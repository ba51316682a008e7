import Foundation
import HTTPTypes
import Hummingbird
import Testing

@testable import ChatServer

@Suite struct UploadTests {
    // Real 1x1 images (decodable by any viewer), and their types' signatures checked by bytes.
    static let png = decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
    static let gif = decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
    static let jpeg = decode(
        "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA=")
    static let webp = decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")

    static func decode(_ base64: String) -> [UInt8] { Array(Data(base64Encoded: base64)!) }

    /// An app with a small upload limit and its own upload directory.
    func withUploadApp(limit: Int = 4096, _ body: @Sendable @escaping (TestAPI, String) async throws -> Void) async throws {
        let directory = NSTemporaryDirectory() + "chat-uploads-\(UInt64.random(in: 0...UInt64.max))"
        try await withApp(configure: {
            $0.uploads.directory = directory
            $0.uploads.maxBytes = limit
            $0.uploads.publicBaseURL = "https://chat.example.com"
        }) { api in try await body(api, directory) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    func storedFiles(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0 != ".incoming" }
    }

    func incomingFiles(_ directory: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: directory + "/.incoming")) ?? []
    }

    @Test func imagesAreCheckedByTheirBytes() async throws {
        try await withUploadApp { api, directory in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            for (name, bytes, type) in [
                ("photo.png", Self.png, "image/png"), ("photo.jpg", Self.jpeg, "image/jpeg"),
                ("anim.gif", Self.gif, "image/gif"), ("pic.webp", Self.webp, "image/webp"),
            ] {
                let sent = try await api.upload(
                    a, room, fields: [("message_type", "image"), ("message_content", "사진을 보내드려요")],
                    file: (name, "application/octet-stream", bytes))
                #expect(sent.status == .created, "\(name): \(sent.raw)")
                #expect(sent["message_type"] as? String == "image")
                #expect(sent["file_name"] as? String == name)
                #expect(sent.int("file_size") == Int64(bytes.count))
                #expect(sent["message_content"] as? String == "사진을 보내드려요")
                let url = try #require(sent["file_url"] as? String)
                #expect(url.hasPrefix("https://chat.example.com/uploads/"))
                let served = try await api.raw(String(url.dropFirst("https://chat.example.com".count)))
                #expect(served.status == .ok)
                #expect(served.body == bytes)
                #expect(served.headers[.contentType] == type)
                #expect(served.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
                #expect(served.headers[.contentDisposition]?.hasPrefix("inline") == true)
            }
            // A text file named .png is not an image.
            let fake = try await api.upload(
                a, room, fields: [("message_type", "image")], file: ("evil.png", "image/png", Array("<script>".utf8)))
            #expect(fake.status == .unprocessableContent)
            #expect(storedFiles(directory).count == 4)
            #expect(incomingFiles(directory).isEmpty)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/messages/", token: a.token).int("total_count") == 4)
        }
    }

    @Test func limitIsEnforcedAtTheBoundaryAndLeavesNothingBehind() async throws {
        try await withUploadApp(limit: 1000) { api, directory in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let exact = try await api.upload(
                a, room, fields: [("message_type", "file")], file: ("exact.bin", "application/octet-stream", Array(repeating: 9, count: 1000)))
            #expect(exact.status == .created, "\(exact.raw)")
            #expect(exact.int("file_size") == 1000)
            let over = try await api.upload(
                a, room, fields: [("message_type", "file")], file: ("over.bin", "application/octet-stream", Array(repeating: 9, count: 1001)))
            #expect(over.status == .contentTooLarge)
            #expect(over.detail != nil)
            #expect(storedFiles(directory).count == 1)
            #expect(incomingFiles(directory).isEmpty)
            #expect(try await api.request(.get, "/chat/rooms/\(room)/messages/", token: a.token).int("total_count") == 1)

            // Other failures leave nothing either: no file part, a text type, a non-participant.
            let noFile = try await api.upload(a, room, fields: [("message_type", "file")], file: nil)
            #expect(noFile.status == .unprocessableContent)
            let textType = try await api.upload(a, room, fields: [("message_type", "text")], file: ("a.txt", "text/plain", [65]))
            #expect(textType.status == .unprocessableContent)
            let outsider = try await api.makeUser()
            let forbidden = try await api.upload(outsider, room, fields: [], file: ("a.txt", "text/plain", [65]))
            #expect(forbidden.status == .forbidden)
            #expect(storedFiles(directory).count == 1)
            #expect(incomingFiles(directory).isEmpty)
        }
    }

    @Test func namesAreGeneratedAndServedSafely() async throws {
        try await withUploadApp { api, directory in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let content = Array("hello, range requests!".utf8)
            let sent = try await api.upload(
                a, room, fields: [], file: ("../../etc/passwd\u{7}.txt", "text/html", content))
            #expect(sent.status == .created, "\(sent.raw)")
            #expect(sent["message_type"] as? String == "file")
            #expect(sent["file_name"] as? String == "passwd.txt")
            let url = try #require(sent["file_url"] as? String)
            let path = String(url.dropFirst("https://chat.example.com".count))
            let stored = try #require(path.split(separator: "/").last.map(String.init))
            #expect(UploadStorage.isStoredName(stored))
            #expect(storedFiles(directory) == [stored])

            let full = try await api.raw(path)
            #expect(full.status == .ok)
            #expect(full.headers[.contentType] == "application/octet-stream")  // declared text/html is not trusted
            #expect(full.headers[.contentDisposition]?.hasPrefix("attachment") == true)
            #expect(full.headers[.cacheControl] != nil)
            let etag = try #require(full.headers[.eTag])
            #expect(full.headers[.lastModified] != nil)

            #expect(try await api.raw(path, headers: [.ifNoneMatch: etag]).status == .notModified)
            let partial = try await api.raw(path, headers: [.range: "bytes=7-11"])
            #expect(partial.status == .partialContent)
            #expect(partial.body == Array("range".utf8))
            #expect(partial.headers[.contentRange] == "bytes 7-11/\(content.count)")
            #expect(try await api.raw(path, headers: [.range: "bytes=-9"]).body == Array("requests!".utf8))
            #expect(try await api.raw(path, headers: [.range: "bytes=500-"]).status == .rangeNotSatisfiable)

            for bad in ["/uploads/..%2F..%2Fetc%2Fpasswd", "/uploads/../sql/0001_init.sql", "/uploads/.incoming",
                "/uploads/\(stored.uppercased())", "/uploads/0123456789abcdef0123456789abcdef"]
            {
                #expect(try await api.raw(bad).status == .notFound, "\(bad)")
            }

            // Deleting the message removes the file and its URL.
            let id = try #require(sent.int("message_id"))
            let deleted = try await api.request(.delete, "/chat/rooms/\(room)/messages/\(id)/", token: a.token)
            #expect(deleted["file_url"] is NSNull)
            #expect(storedFiles(directory).isEmpty)
            #expect(try await api.raw(path).status == .notFound)
        }
    }

    @Test func hostileFormsAreRejectedWithoutLeftovers() async throws {
        try await withUploadApp(limit: 1 << 20) { api, directory in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let truncated = try await api.upload(
                a, room, fields: [("message_type", "file")], file: ("cut.bin", "application/octet-stream", Array(repeating: 1, count: 5000)),
                truncated: true)
            #expect(truncated.status == .unprocessableContent, "\(truncated.raw)")
            let manyFields = try await api.upload(
                a, room, fields: (0..<40).map { ("extra\($0)", String(repeating: "x", count: 2000)) },
                file: ("a.txt", "text/plain", [65]))
            #expect(manyFields.status == .contentTooLarge || manyFields.status == .unprocessableContent, "\(manyFields.raw)")
            #expect(storedFiles(directory).isEmpty)
            #expect(incomingFiles(directory).isEmpty)

            // Markup declared by the client is never served as such, nor inline.
            let svg = try await api.upload(
                a, room, fields: [("message_type", "file")],
                file: ("x.svg", "image/svg+xml", Array("<svg onload=alert(1)></svg>".utf8)))
            #expect(svg.status == .created)
            let url = try #require(svg["file_url"] as? String)
            #expect(!url.hasSuffix(".svg"))
            let served = try await api.raw(String(url.dropFirst("https://chat.example.com".count)))
            #expect(served.headers[.contentType] == "application/octet-stream")
            #expect(served.headers[.contentDisposition]?.hasPrefix("attachment") == true)
            #expect(served.headers[.contentSecurityPolicy]?.contains("sandbox") == true)
        }
    }

    @Test func voiceNeedsAudioBytes() async throws {
        try await withUploadApp { api, _ in
            let (a, b) = (try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(a, with: [b])
            let ogg = Array("OggS".utf8) + Array(repeating: 0, count: 20)
            let voice = try await api.upload(a, room, fields: [("message_type", "voice")], file: ("memo.ogg", "audio/ogg", ogg))
            #expect(voice.status == .created, "\(voice.raw)")
            let notAudio = try await api.upload(a, room, fields: [("message_type", "voice")], file: ("memo.ogg", "audio/ogg", [1, 2, 3]))
            #expect(notAudio.status == .unprocessableContent)
        }
    }

    @Test func byteRangeParsing() {
        #expect(ByteRange.parse("bytes=0-0", size: 10) == .satisfiable(0...0))
        #expect(ByteRange.parse("bytes=5-", size: 10) == .satisfiable(5...9))
        #expect(ByteRange.parse("bytes=-3", size: 10) == .satisfiable(7...9))
        #expect(ByteRange.parse("bytes=-30", size: 10) == .satisfiable(0...9))
        #expect(ByteRange.parse("bytes=3-100", size: 10) == .satisfiable(3...9))
        #expect(ByteRange.parse("bytes=10-", size: 10) == .unsatisfiable)
        #expect(ByteRange.parse("bytes=0-1,3-4", size: 10) == .ignored)
        #expect(ByteRange.parse("items=0-1", size: 10) == .ignored)
        #expect(ByteRange.parse("bytes=5-2", size: 10) == .ignored)
    }
}
