import ChatCore
import Foundation
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Files under `UPLOAD_DIR`: written to a temporary file while streaming, renamed to a
/// server-generated unguessable name once complete and valid, removed when their message
/// goes away. Client names never become paths.
struct UploadStorage: Sendable {
    let directory: String
    let maxBytes: Int
    let threadPool: NIOThreadPool

    init(directory: String, maxBytes: Int, threadPool: NIOThreadPool = .singleton) {
        self.directory = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.maxBytes = maxBytes
        self.threadPool = threadPool
    }

    var temporaryDirectory: String { directory + "/.incoming" }

    /// Creates the directories (once, at start).
    func prepare() throws {
        try FileManager.default.createDirectory(atPath: temporaryDirectory, withIntermediateDirectories: true)
    }

    /// Size and modification time of a stored file, or nil when it is missing.
    func attributes(ofStoredName name: String) async -> (size: Int, modified: Date)? {
        let path = path(forStoredName: name)
        return try? await threadPool.runIfActive {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            guard let size = (attributes[.size] as? NSNumber)?.intValue else { throw UploadError.storage("no size") }
            return (size, (attributes[.modificationDate] as? Date) ?? Date(timeIntervalSince1970: 0))
        }
    }

    /// Stored names (not in-flight uploads) last modified before `age` seconds ago.
    func storedNames(olderThan age: TimeInterval) async -> [String] {
        let directory = self.directory
        return (try? await threadPool.runIfActive {
            let manager = FileManager.default
            let cutoff = Date().addingTimeInterval(-age)
            return ((try? manager.contentsOfDirectory(atPath: directory)) ?? []).filter { name in
                guard UploadStorage.isStoredName(name),
                    let modified = (try? manager.attributesOfItem(atPath: "\(directory)/\(name)"))?[.modificationDate] as? Date
                else { return false }
                return modified < cutoff
            }
        }) ?? []
    }

    /// Stored names: 32 random hex digits and an optional short extension.
    static func isStoredName(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, parts[0].count == 32, parts[0].allSatisfy(\.isHexDigit),
            parts[0].allSatisfy({ !$0.isUppercase })
        else { return false }
        if parts.count == 2 {
            let ext = parts[1]
            return (1...10).contains(ext.count) && ext.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber) }
        }
        return true
    }

    static func randomName(extension ext: String?) -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = (0..<2).map { _ in
            let value = generator.next() as UInt64
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }.joined()
        guard let ext, !ext.isEmpty else { return hex }
        return "\(hex).\(ext)"
    }

    /// The display name kept for a client's file name: last path component, no control
    /// characters, at most 255 characters; "file" when nothing is left.
    static func sanitizedFileName(_ name: String?) -> String {
        guard let name else { return "file" }
        let last = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        var scalars = String.UnicodeScalarView()
        scalars.append(
            contentsOf: last.unicodeScalars.filter { !$0.properties.generalCategory.isControlOrFormat }.prefix(255))
        let cleaned = String(scalars).trimmingCharacters(in: .whitespaces)
        return cleaned.isEmpty || cleaned == "." || cleaned == ".." ? "file" : cleaned
    }

    /// Extensions kept on stored names: common documents, archives and media. Anything a
    /// browser or server might execute or render as markup (html, svg, js, ...) is not.
    static let keptExtensions: Set<String> = [
        "pdf", "txt", "csv", "rtf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "hwp", "hwpx",
        "key", "pages", "numbers", "zip", "7z", "gz", "tar", "rar", "mp3", "m4a", "aac", "ogg", "oga", "opus", "wav",
        "amr", "flac", "mp4", "m4v", "mov", "webm", "mkv", "avi", "heic", "heif", "bmp", "tif", "tiff",
    ]

    /// The client's file extension, lower-cased, when it is one of `keptExtensions`.
    static func fileExtension(of name: String) -> String? {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        let ext = name[name.index(after: dot)...].lowercased()
        return keptExtensions.contains(ext) ? ext : nil
    }

    func path(forStoredName name: String) -> String { "\(directory)/\(name)" }

    /// Moves a completed temporary file to its final name.
    func commit(_ temporary: TemporaryFile, as name: String) async throws {
        let target = path(forStoredName: name)
        try await threadPool.runIfActive {
            guard rename(temporary.path, target) == 0 else { throw UploadError.storage("rename failed: \(errno)") }
        }
    }

    /// Deletes uploads left in `.incoming/` by a process that died mid-upload (older than
    /// `age`); returns how many.
    func sweepAbandonedUploads(olderThan age: TimeInterval) async -> Int {
        let directory = temporaryDirectory
        return (try? await threadPool.runIfActive {
            let manager = FileManager.default
            let cutoff = Date().addingTimeInterval(-age)
            var removed = 0
            for name in (try? manager.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".part") {
                let path = "\(directory)/\(name)"
                if let modified = (try? manager.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                    modified < cutoff, unlink(path) == 0
                {
                    removed += 1
                }
            }
            return removed
        }) ?? 0
    }

    /// Removes a stored file; a missing file is fine.
    func remove(storedName name: String) async {
        guard Self.isStoredName(name) else { return }
        let target = path(forStoredName: name)
        _ = try? await threadPool.runIfActive { unlink(target) }
    }
}

enum UploadError: Error {
    case storage(String)
}

private extension Unicode.GeneralCategory {
    var isControlOrFormat: Bool {
        switch self {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }
}

/// A file being written under the upload directory's `.incoming/`; removed unless committed.
final class TemporaryFile: @unchecked Sendable {
    let path: String
    private var descriptor: Int32
    private var pending: [UInt8] = []
    private(set) var size = 0
    /// The first bytes, for signature checks.
    private(set) var prefix: [UInt8] = []
    private let threadPool: NIOThreadPool
    static let flushThreshold = 256 * 1024

    private init(path: String, descriptor: Int32, threadPool: NIOThreadPool) {
        self.path = path
        self.descriptor = descriptor
        self.threadPool = threadPool
    }

    static func create(in storage: UploadStorage) async throws -> TemporaryFile {
        let path = "\(storage.temporaryDirectory)/\(UploadStorage.randomName(extension: "part"))"
        let descriptor = try await storage.threadPool.runIfActive {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw UploadError.storage("cannot create temporary file: \(errno)") }
            return descriptor
        }
        return TemporaryFile(path: path, descriptor: descriptor, threadPool: storage.threadPool)
    }

    func append(_ bytes: some Collection<UInt8>) async throws {
        if prefix.count < FileSignature.prefixLength {
            prefix.append(contentsOf: bytes.prefix(FileSignature.prefixLength - prefix.count))
        }
        pending.append(contentsOf: bytes)
        size += bytes.count
        if pending.count >= Self.flushThreshold { try await flush() }
    }

    func flush() async throws {
        guard !pending.isEmpty else { return }
        let chunk = pending
        pending.removeAll(keepingCapacity: true)
        let descriptor = self.descriptor
        try await threadPool.runIfActive {
            try chunk.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw UploadError.storage("write failed: \(errno)")
                    }
                    offset += written
                }
            }
        }
    }

    /// Flushes and closes the file (it stays on disk for `commit`).
    func finish() async throws {
        try await flush()
        closeDescriptor()
    }

    /// Closes and deletes the file.
    func discard() async {
        closeDescriptor()
        let path = self.path
        _ = try? await threadPool.runIfActive { unlink(path) }
    }

    private func closeDescriptor() {
        if descriptor >= 0 {
            close(descriptor)
            descriptor = -1
        }
    }

    deinit {
        closeDescriptor()
    }
}
