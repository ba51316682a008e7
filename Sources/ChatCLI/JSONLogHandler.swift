import ChatServer
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Chooses how the process writes its log lines (`LOG_FORMAT`); call once, before any logger is made.
func bootstrapLogging(_ format: LogFormat) {
    switch format {
    case .text: LoggingSystem.bootstrap(StreamLogHandler.standardError)
    case .json: LoggingSystem.bootstrap(JSONLogHandler.init(label:))
    }
}

/// Writes each log event to standard error as one JSON object per line:
/// `{"time":"…Z","level":"info","logger":"chat-server","message":"request","source":"ChatServer",…}`
/// with the logger's and the event's metadata as further fields.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    private static let output = NIOLockedValueBox(FileHandle.standardError)

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
        file: String, function: String, line: UInt
    ) {
        var fields: [(String, String)] = [
            ("time", Self.quoted(ChatJSON.formatTimestamp(Date()))), ("level", Self.quoted(level.rawValue)),
            ("logger", Self.quoted(label)), ("message", Self.quoted(message.description)), ("source", Self.quoted(source)),
        ]
        let merged = metadata.merging(explicit ?? [:]) { _, event in event }
        for key in merged.keys.sorted() where !["time", "level", "logger", "message", "source"].contains(key) {
            fields.append((key, Self.json(merged[key]!)))
        }
        let line = "{" + fields.map { "\(Self.quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}\n"
        Self.output.withLockedValue { $0.write(Data(line.utf8)) }
    }

    static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): return quoted(text)
        case .stringConvertible(let value): return quoted(value.description)
        case .array(let values): return "[" + values.map(json).joined(separator: ",") + "]"
        case .dictionary(let values):
            return "{" + values.keys.sorted().map { "\(quoted($0)):\(json(values[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal.
    static func quoted(_ text: String) -> String {
        JSONText.quoted(text)
    }
}
