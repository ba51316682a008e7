import ChatCore
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// The access log (`ACCESS_LOG`): one line per answered request, in the process's log format
/// (`LOG_FORMAT`), written to standard error off the request path.
///
/// A request only renders its line into a shared buffer; the service's `run()` writes what
/// has gathered every `flushInterval` with one `write(2)`, and once more at shutdown. Through
/// swift-log's stream handler the same line cost a metadata dictionary, a formatted local
/// time and an unbuffered write per request: about 0.075 ms of CPU per send (issue 10), a
/// fifth of the server's share. Lines look like the other log lines of their format, so one
/// parser reads both; when standard error does not keep up, lines past `maxPendingBytes` are
/// dropped and counted rather than held.
final class AccessLog: Service, Sendable {
    struct Entry {
        var method: String
        var route: String
        var path: String
        var status: Int
        var duration: Duration
        var requestID: String
        var userID: Int64?
    }

    let format: LogFormat
    let label: String
    let flushInterval: Duration
    let maxPendingBytes: Int
    private let pending = NIOLockedValueBox(Pending())

    private struct Pending {
        var bytes: [UInt8] = []
        var dropped = 0
    }

    init(format: LogFormat, label: String = "chat-server", flushInterval: Duration = .milliseconds(100), maxPendingBytes: Int = 4 << 20) {
        self.format = format
        self.label = label
        self.flushInterval = flushInterval
        self.maxPendingBytes = maxPendingBytes
    }

    func record(_ entry: Entry, at time: Date = Date()) {
        let line = render(entry, at: time)
        pending.withLockedValue { pending in
            if pending.bytes.count + line.count > maxPendingBytes {
                pending.dropped += 1
            } else {
                pending.bytes.append(contentsOf: line)
            }
        }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: self.flushInterval)
                self.flush()
            }
        }
        flush()
    }

    /// Writes what has gathered.
    func flush() {
        let (bytes, dropped) = pending.withLockedValue { pending in
            defer { pending = Pending() }
            return (pending.bytes, pending.dropped)
        }
        var out = bytes
        if dropped > 0 {
            out += render(note: "access log lines dropped: standard error did not keep up", count: dropped)
        }
        guard !out.isEmpty else { return }
        out.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }

    // MARK: Rendering

    /// The fields after time, level and message, in key order.
    private func fields(_ entry: Entry) -> [(String, String)] {
        var fields: [(String, String)] = []
        if let userID = entry.userID { fields.append(("chat.user_id", String(userID))) }
        fields.append(("hb.request.id", entry.requestID))
        fields.append(("http.duration_ms", String(entry.duration.inSeconds * 1000)))
        fields.append(("http.method", entry.method))
        fields.append(("http.path", entry.path))
        fields.append(("http.route", entry.route))
        fields.append(("http.status", String(entry.status)))
        return fields
    }

    func render(_ entry: Entry, at time: Date) -> [UInt8] {
        line(time: time, level: "info", message: "request", fields: fields(entry))
    }

    private func render(note: String, count: Int) -> [UInt8] {
        line(time: Date(), level: "warning", message: note, fields: [("chat.dropped", String(count))])
    }

    private func line(time: Date, level: String, message: String, fields: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        let timestamp = ChatJSON.formatTimestamp(time)
        switch format {
        case .text:
            // As swift-log's StreamLogHandler writes them: `TIME LEVEL LABEL : key=value ... [SOURCE] MESSAGE`.
            out += timestamp.utf8
            out.append(UInt8(ascii: " "))
            out += level.utf8
            out.append(UInt8(ascii: " "))
            out += label.utf8
            out += " :".utf8
            for (key, value) in fields {
                out.append(UInt8(ascii: " "))
                out += key.utf8
                out.append(UInt8(ascii: "="))
                out += value.utf8
            }
            out += " [ChatServer] ".utf8
            out += message.utf8
        case .json:
            // As JSONLogHandler writes them.
            out += "{\"time\":\"".utf8
            out += timestamp.utf8
            out += "\",\"level\":\"".utf8
            out += level.utf8
            out += "\",\"logger\":".utf8
            JSONText.appendQuoted(label, to: &out)
            out += ",\"message\":".utf8
            JSONText.appendQuoted(message, to: &out)
            out += ",\"source\":\"ChatServer\"".utf8
            for (key, value) in fields {
                out.append(UInt8(ascii: ","))
                JSONText.appendQuoted(key, to: &out)
                out.append(UInt8(ascii: ":"))
                JSONText.appendQuoted(value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "\n"))
        return out
    }
}

/// JSON string literals for log lines, written once for the access log and `LOG_FORMAT=json`.
public enum JSONText {
    /// Appends `text` as a JSON string literal: quotes, backslashes and every control
    /// character escaped (a request path is the client's choice: nothing in it can end the line
    /// or forge a field).
    public static func appendQuoted(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += "\\\"".utf8
            case UInt8(ascii: "\\"): out += "\\\\".utf8
            case 0..<0x20:
                out += "\\u00".utf8
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    public static func quoted(_ text: String) -> String {
        var out: [UInt8] = []
        appendQuoted(text, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}
