// Shared helpers of the trainer tests: byte-level comparisons of flat blocks and of checkpoint
// folders, error messages (tiny runs come from RunTestSupport).
import XCTest
import Foundation
import LeffaTensor
import LeffaData
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

/// Bitwise equality of two float blocks.
func sameBits(_ a: Tensor, _ b: Tensor) -> Bool {
    a.count == b.count && memcmp(a.data, b.data, a.count * MemoryLayout<Float>.size) == 0
}

/// Every file of a folder (recursively) and its bytes: to show nothing in it changed.
func folderBytes(_ url: URL) -> [String: Data] {
    var out: [String: Data] = [:]
    guard let e = FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil) else { return out }
    for case let f as URL in e {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: f.path, isDirectory: &isDir), !isDir.boolValue {
            out[f.path.replacingOccurrences(of: url.path, with: "")] = FileManager.default.contents(atPath: f.path)
        }
    }
    return out
}

/// The message of an error thrown by `body`, or a failure when it does not throw.
func errorMessage(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String {
    do { try body() } catch { return "\(error)" }
    XCTFail("expected an error", file: file, line: line)
    return ""
}
