import ChatCore
import Logging
import ServiceLifecycle

/// Runs the retention job every `interval`: deletes expired messages in batches (one
/// instance at a time, by advisory lock) and removes their files, prunes the rooms' change
/// logs past `changeLogWindow`, and clears partial uploads abandoned by a crashed process.
struct RetentionService: Service {
    let store: RetentionStore
    let files: FileStore
    let storage: UploadStorage
    let interval: Duration
    let batchSize: Int
    let changeLogWindow: Duration
    let metrics: ServerMetrics
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
            do {
                try await runOnce()
            } catch {
                logger.error("retention run failed", metadata: ["error": "\(String(reflecting: error))"])
            }
        }
    }

    /// Deletes everything that is due now. Returns how many messages went, or nil when
    /// another instance is running the job.
    @discardableResult
    func runOnce() async throws -> Int? {
        var total = 0
        while true {
            guard let batch = try await store.deleteExpiredBatch(limit: batchSize) else {
                logger.debug("retention skipped: another instance holds the lock")
                return total == 0 ? nil : total
            }
            for path in batch.filePaths { await storage.remove(storedName: path) }
            total += batch.deletedMessages
            metrics.retentionDeletedMessages.increment(by: Int64(batch.deletedMessages))
            if batch.deletedMessages < batchSize { break }
        }
        var pruned = 0
        while let count = try await store.pruneChanges(olderThan: changeLogWindow, limit: batchSize * 20) {
            pruned += count
            if count < batchSize * 20 { break }
        }
        metrics.retentionRuns.increment()
        // Files a crash left behind: partial uploads, and stored files whose message was
        // never committed or whose removal after a delete was lost (an hour's grace).
        var abandoned = await storage.sweepAbandonedUploads(olderThan: 3600)
        for name in try await files.unreferenced(await storage.storedNames(olderThan: 3600)) {
            await storage.remove(storedName: name)
            abandoned += 1
        }
        if abandoned > 0 {
            logger.notice("removed abandoned upload files", metadata: ["chat.files": "\(abandoned)"])
        }
        if total > 0 {
            logger.info("retention deleted expired messages", metadata: ["chat.deleted_messages": "\(total)"])
        }
        if pruned > 0 {
            logger.info("retention pruned the change log", metadata: ["chat.pruned_changes": "\(pruned)"])
        }
        return total
    }
}
