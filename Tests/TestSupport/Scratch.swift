// Scratch folders for tests that write files: one fresh folder per call, removed when the test
// case tears down, so tests never see each other's files.
import Foundation
import XCTest

/// A fresh directory under the system temp dir named after `prefix`, removed at teardown.
public func scratchDirectory(_ test: XCTestCase, prefix: String = "leffa-tests") throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}
