import ChatCore
import Foundation
import Hummingbird
import Postgres

/// `GET /uploads/{name}`: stored files, with their content type, `nosniff`, attachment
/// disposition for anything but images, validators (ETag, Last-Modified), caching and
/// single byte ranges. Only names the server generated resolve, so nothing outside
/// `UPLOAD_DIR` is reachable.
struct UploadsController {
    let storage: UploadStorage
    let files: FileStore
    let fileIO = FileIO()

    func addRoutes(to routes: Routes) {
        routes.on(":name", .get) { request, context in
            let name = context.parameters.get("name") ?? ""
            guard UploadStorage.isStoredName(name), let stored = try await files.file(storedName: name) else {
                throw APIError(.notFound, "File not found")
            }
            let path = storage.path(forStoredName: name)
            guard let (size, modified) = await storage.attributes(ofStoredName: name) else {
                throw APIError(.notFound, "File not found")
            }
            let etag = "\"\(name.prefix(32))-\(size)\""
            let lastModified = HTTPDate.format(modified)

            var headers: HTTPFields = [
                .contentType: stored.contentType,
                .init("X-Content-Type-Options")!: "nosniff",
                .eTag: etag,
                .lastModified: lastModified,
                // Names are unguessable and files never change.
                .cacheControl: "private, max-age=31536000, immutable",
                .acceptRanges: "bytes",
                .contentSecurityPolicy: "default-src 'none'; sandbox",
            ]
            headers[.contentDisposition] = Self.disposition(stored.isImage ? "inline" : "attachment", fileName: stored.fileName)

            if Self.notModified(request.headers, etag: etag, modified: modified) {
                return Response(status: .notModified, headers: headers)
            }
            if let rangeHeader = request.headers[.range],
                request.headers[.ifRange].map({ $0 == etag || $0 == lastModified }) ?? true
            {
                switch ByteRange.parse(rangeHeader, size: size) {
                case .satisfiable(let range):
                    headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(size)"
                    headers[.contentLength] = String(range.count)
                    let body = try await fileIO.loadFile(path: path, range: range, context: context)
                    return Response(status: .partialContent, headers: headers, body: body)
                case .unsatisfiable:
                    headers[.contentRange] = "bytes */\(size)"
                    return Response(status: .rangeNotSatisfiable, headers: headers)
                case .ignored:
                    break
                }
            }
            headers[.contentLength] = String(size)
            if size == 0 { return Response(status: .ok, headers: headers) }
            return Response(status: .ok, headers: headers, body: try await fileIO.loadFile(path: path, context: context))
        }
    }

    static func notModified(_ headers: HTTPFields, etag: String, modified: Date) -> Bool {
        if let match = headers[.ifNoneMatch] {
            return match == "*" || match.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == etag }
        }
        if let since = headers[.ifModifiedSince].flatMap(HTTPDate.parse) {
            return modified.timeIntervalSince1970.rounded(.down) <= since.timeIntervalSince1970
        }
        return false
    }

    /// `attachment; filename="plain.txt"; filename*=UTF-8''%ED%95%9C.txt` (RFC 6266).
    static func disposition(_ kind: String, fileName: String) -> String {
        let ascii = String(fileName.unicodeScalars.map { $0.isASCII && $0 != "\"" && $0 != "\\" && $0.value >= 0x20 ? Character($0) : "_" })
        let encoded = fileName.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ascii
        return "\(kind); filename=\"\(ascii)\"; filename*=UTF-8''\(encoded)"
    }
}

/// A single `bytes=` range of a `Range` header.
enum ByteRange: Equatable {
    case satisfiable(ClosedRange<Int>)
    case unsatisfiable
    /// Not a single byte range we serve (multiple ranges, other units, malformed): send
    /// the whole file, as RFC 9110 allows.
    case ignored

    static func parse(_ header: String, size: Int) -> ByteRange {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard trimmed.lowercased().hasPrefix("bytes=") else { return .ignored }
        let spec = trimmed.dropFirst(6)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .ignored }
        let startText = spec[..<dash].trimmingCharacters(in: .whitespaces)
        let endText = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        if startText.isEmpty {
            guard let suffix = Int(endText), suffix >= 0 else { return .ignored }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .satisfiable(max(0, size - suffix)...(size - 1))
        }
        guard let start = Int(startText), start >= 0 else { return .ignored }
        let end: Int
        if endText.isEmpty {
            end = size - 1
        } else {
            guard let value = Int(endText), value >= start else { return .ignored }
            end = min(value, size - 1)
        }
        guard start < size else { return .unsatisfiable }
        return .satisfiable(start...end)
    }
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for Last-Modified and If-Modified-Since.
enum HTTPDate {
    static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "GMT")!
        return calendar
    }()

    static func format(_ date: Date) -> String {
        let c = calendar.dateComponents([.weekday, .day, .month, .year, .hour, .minute, .second], from: date)
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        return "\(weekdays[(c.weekday ?? 1) - 1]), \(two(c.day)) \(months[(c.month ?? 1) - 1]) \(c.year ?? 1970) "
            + "\(two(c.hour)):\(two(c.minute)):\(two(c.second)) GMT"
    }

    static func parse(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]),
            let month = months.firstIndex(of: String(parts[2])), let year = Int(parts[3])
        else { return nil }
        let time = parts[4].split(separator: ":").compactMap { Int($0) }
        guard time.count == 3 else { return nil }
        return calendar.date(
            from: DateComponents(year: year, month: month + 1, day: day, hour: time[0], minute: time[1], second: time[2]))
    }
}
