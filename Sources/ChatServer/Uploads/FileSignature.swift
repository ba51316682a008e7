/// Recognises file types by their first bytes, never by name or declared type.
enum FileSignature {
    struct Image: Equatable {
        var contentType: String
        var fileExtension: String
    }

    /// The number of leading bytes the checks need.
    static let prefixLength = 16

    /// JPEG, PNG, GIF or WebP, else nil.
    static func image(_ bytes: [UInt8]) -> Image? {
        func starts(_ signature: [UInt8], at offset: Int = 0) -> Bool {
            bytes.count >= offset + signature.count && Array(bytes[offset..<offset + signature.count]) == signature
        }
        if starts([0xFF, 0xD8, 0xFF]) { return Image(contentType: "image/jpeg", fileExtension: "jpg") }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            return Image(contentType: "image/png", fileExtension: "png")
        }
        if starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8)) {
            return Image(contentType: "image/gif", fileExtension: "gif")
        }
        if starts(Array("RIFF".utf8)), starts(Array("WEBP".utf8), at: 8) {
            return Image(contentType: "image/webp", fileExtension: "webp")
        }
        return nil
    }

    /// Common audio containers for voice messages: Ogg, MP3, MP4/M4A, WAV, WebM, AMR, AAC.
    static func audio(_ bytes: [UInt8]) -> String? {
        func starts(_ signature: [UInt8], at offset: Int = 0) -> Bool {
            bytes.count >= offset + signature.count && Array(bytes[offset..<offset + signature.count]) == signature
        }
        if starts(Array("OggS".utf8)) { return "audio/ogg" }
        if starts(Array("ID3".utf8)) || starts([0xFF, 0xFB]) || starts([0xFF, 0xF3]) || starts([0xFF, 0xF2]) {
            return "audio/mpeg"
        }
        if starts(Array("ftyp".utf8), at: 4) { return "audio/mp4" }
        if starts(Array("RIFF".utf8)), starts(Array("WAVE".utf8), at: 8) { return "audio/wav" }
        if starts([0x1A, 0x45, 0xDF, 0xA3]) { return "audio/webm" }
        if starts(Array("#!AMR".utf8)) { return "audio/amr" }
        if starts([0xFF, 0xF1]) || starts([0xFF, 0xF9]) { return "audio/aac" }
        return nil
    }
}
