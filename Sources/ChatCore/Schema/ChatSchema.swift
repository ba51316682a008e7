import Foundation
import Postgres

/// The chat schema: the numbered migrations of sql/, carried by the binary
/// (EmbeddedMigrations.generated.swift), or read from a directory that overrides them.
public enum ChatSchema {
    /// The embedded migrations, or those in `directory` (`MIGRATIONS_DIR`) when it is set.
    public static func migrations(overrideDirectory directory: String?) throws -> [Migrator.Migration] {
        guard let directory else { return embeddedMigrations }
        return try Migrator.loadMigrations(from: URL(fileURLWithPath: directory, isDirectory: true))
    }
}
