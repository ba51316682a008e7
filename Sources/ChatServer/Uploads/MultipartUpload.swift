import Foundation
import Hummingbird
import MultipartKit

/// A `multipart/form-data` message upload, parsed while the body streams in: text fields
/// are kept in memory (small), the `file` part goes straight to a temporary file.
struct MultipartUpload {
    var fields: [String: String]
    var file: TemporaryFile?
    var fileName: String?
    var declaredContentType: String?

    /// Bytes of everything but the file (headers and text fields, all parts together).
    static let maxFieldBytes = 64 * 1024
    static let maxParts = 16
    static let knownFields: Set<String> = ["message_content", "message_type", "reply_to_message_id", "client_message_id"]

    /// Parses the request body. Throws 413 when the file passes `storage.maxBytes` (the
    /// temporary file is deleted) and 422 for a malformed form.
    static func receive(_ request: Request, storage: UploadStorage) async throws -> MultipartUpload {
        guard let contentType = request.headers[.contentType], let boundary = Self.boundary(of: contentType) else {
            throw APIError.validation("multipart/form-data needs a boundary")
        }
        let bodyLimit = storage.maxBytes + maxFieldBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > bodyLimit {
            throw APIError(.contentTooLarge, "Upload is larger than \(storage.maxBytes) bytes")
        }
        let state = ParseState()
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { name, value in state.header(name, value) }
        parser.onBody = { buffer in state.body(&buffer) }
        parser.onPartComplete = { state.partComplete() }
        do {
            var received = 0
            for try await chunk in request.body {
                received += chunk.readableBytes
                guard received <= bodyLimit else {
                    throw APIError(.contentTooLarge, "Upload is larger than \(storage.maxBytes) bytes")
                }
                try parser.execute(chunk)
                if let failure = state.failure { throw failure }
                if !state.pendingFileBytes.isEmpty {
                    if state.file == nil { state.file = try await TemporaryFile.create(in: storage) }
                    try await state.file!.append(state.pendingFileBytes)
                    state.pendingFileBytes.removeAll(keepingCapacity: true)
                    guard state.file!.size <= storage.maxBytes else {
                        throw APIError(.contentTooLarge, "Upload is larger than \(storage.maxBytes) bytes")
                    }
                }
            }
            // A body cut short (no closing boundary) must not store a truncated file.
            guard state.completedParts > 0, !state.partOpen, !state.fileSeen || state.fileCompleted else {
                throw APIError.validation("The multipart body is incomplete")
            }
            if state.fileSeen, state.file == nil { state.file = try await TemporaryFile.create(in: storage) }  // empty file
            try await state.file?.finish()
        } catch {
            await state.file?.discard()
            if error is APIError { throw error }
            if error is UploadError { throw error }
            throw APIError.validation("Malformed multipart/form-data body")
        }
        return MultipartUpload(
            fields: state.fields, file: state.file, fileName: state.fileName, declaredContentType: state.fileContentType)
    }

    static func boundary(of contentType: String) -> String? {
        guard contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        return HeaderParameters(contentType)["boundary"].flatMap { $0.isEmpty ? nil : $0 }
    }

    private final class ParseState {
        var fields: [String: String] = [:]
        var file: TemporaryFile?
        var fileSeen = false
        var fileName: String?
        var fileContentType: String?
        var pendingFileBytes: [UInt8] = []
        var completedParts = 0
        var failure: APIError?
        /// A part has started (headers or bytes seen) and not completed.
        var partOpen = false
        var fileCompleted = false
        private var formBytes = 0

        private func countFormBytes(_ count: Int) {
            formBytes += count
            if formBytes > MultipartUpload.maxFieldBytes {
                failure = failure ?? APIError(.contentTooLarge, "Form fields are larger than \(MultipartUpload.maxFieldBytes) bytes")
            }
        }

        private var partName: String?
        private var partFileName: String?
        private var partContentType: String?
        private var fieldBytes: [UInt8] = []

        func header(_ name: String, _ value: String) {
            partOpen = true
            countFormBytes(name.utf8.count + value.utf8.count)
            switch name.lowercased() {
            case "content-disposition":
                let parameters = HeaderParameters(value)
                partName = parameters["name"]
                partFileName = parameters["filename"]
            case "content-type":
                partContentType = value
            default:
                break
            }
        }

        func body(_ buffer: inout ByteBuffer) {
            guard failure == nil else { return }
            partOpen = true
            if partName == "file" {
                if !fileSeenForThisPart {
                    guard !fileSeen else {
                        failure = APIError.validation("Only one file per message")
                        return
                    }
                    fileSeen = true
                    fileSeenForThisPart = true
                    fileName = partFileName
                    fileContentType = partContentType
                }
                pendingFileBytes.append(contentsOf: buffer.readableBytesView)
            } else {
                countFormBytes(buffer.readableBytes)
                if let partName, MultipartUpload.knownFields.contains(partName) {
                    fieldBytes.append(contentsOf: buffer.readableBytesView)
                }
            }
        }

        private var fileSeenForThisPart = false

        func partComplete() {
            completedParts += 1
            partOpen = false
            if completedParts > MultipartUpload.maxParts {
                failure = failure ?? APIError.validation("At most \(MultipartUpload.maxParts) form parts")
            }
            if partName == "file" {
                fileCompleted = true
                if !fileSeenForThisPart {  // a file part with no bytes
                    if fileSeen { failure = APIError.validation("Only one file per message") }
                    fileSeen = true
                    fileName = partFileName
                    fileContentType = partContentType
                }
            } else if let partName, MultipartUpload.knownFields.contains(partName) {
                fields[partName] = String(decoding: fieldBytes, as: UTF8.self)
            }
            partName = nil
            partFileName = nil
            partContentType = nil
            fieldBytes = []
            fileSeenForThisPart = false
        }
    }
}

/// `key=value` parameters of a header such as Content-Type or Content-Disposition, with
/// quoted values (`filename="a; b.png"`) and backslash escapes inside quotes.
struct HeaderParameters {
    private var values: [String: String] = [:]

    init(_ header: String) {
        var parts: [String] = []
        var current = ""
        var inQuotes = false
        var escaped = false
        for character in header {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" && inQuotes {
                escaped = true
            } else if character == "\"" {
                inQuotes.toggle()
            } else if character == ";" && !inQuotes {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        for part in parts.dropFirst() {
            guard let equals = part.firstIndex(of: "=") else { continue }
            let key = part[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = part[part.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            values[key] = value
        }
    }

    subscript(key: String) -> String? { values[key] }
}
