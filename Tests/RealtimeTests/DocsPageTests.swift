import ChatTestKit
import Foundation
import Testing

/// GET /docs in a real headless browser (Debian's chromium): the page renders every
/// operation of /openapi.json from this server alone.
@Suite struct DocsPageTests {
    @Test func everyOperationIsOnTheRenderedPage() async throws {
        try await withCluster(1) { cluster in
            let client = cluster.http(cluster.a)
            let document = try JSONSerialization.jsonObject(
                with: Data(try await client.request("GET", "/openapi.json", token: nil).body)) as? [String: Any]
            await client.close()
            let paths = try #require(document?["paths"] as? [String: [String: Any]])
            var operations: [(String, String)] = []
            for (path, item) in paths {
                for method in item.keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                    operations.append((method.uppercased(), path))
                }
            }
            #expect(operations.count > 20)

            let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chat-docs-\(UUID().uuidString)")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--user-data-dir=\(profile.path)", "--virtual-time-budget=10000", "--dump-dom",
                "http://127.0.0.1:\(cluster.a.port)/docs",
            ]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            let dom = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: profile)

            #expect(dom.contains(#"data-rendered="true""#), "the page did not finish rendering: \(dom.prefix(500))")
            for (method, path) in operations {
                #expect(
                    dom.contains(#"data-method="\#(method)" data-path="\#(path)""#)
                        || dom.contains(#"data-path="\#(path)" data-method="\#(method)""#),
                    "\(method) \(path) is not on /docs")
            }
        }
    }
}
