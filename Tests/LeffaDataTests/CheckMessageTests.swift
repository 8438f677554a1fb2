// What the data check blames, case by case: the file that is wrong, not its correct neighbours;
// a symlink loop or a dangling link for what it is, not "missing"; a truncated PNG found even when
// only headers are read (the worker's pre-check).
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import LeffaTensor

final class CheckMessageTests: XCTestCase {
    func synthetic() throws -> URL {
        let root = try scratchDirectory(self)
        try generateSynthetic(out: root, count: 3, height: 32, width: 24, seed: 3)
        return root
    }
    func check(_ root: URL, decode: Bool = false) -> [DataProblem] {
        openDataset(.synthetic, root: root).check(CheckOptions(decodeImages: decode))
    }

    /// A person image of another size than its four person-aligned files is the one to fix.
    func testAWrongSizePersonImageIsBlamedItself() throws {
        let root = try synthetic()
        let other = try scratchDirectory(self)
        try generateSynthetic(out: other, count: 1, height: 64, width: 48, seed: 9)
        let person = root.appendingPathComponent("train/image/000001_00.png")
        try FileManager.default.removeItem(at: person)
        try FileManager.default.copyItem(at: other.appendingPathComponent("train/image/000000_00.png"), to: person)
        let errors = check(root).errors
        XCTAssertEqual(errors.count, 1, errors.report)
        XCTAssertEqual(errors.first?.error.path, person.path)
        XCTAssertTrue(errors.report.contains("is 64×48, but its 4 person-aligned files") && errors.report.contains("are all 32×24"),
                      errors.report)
    }

    /// One wrong sibling is still that sibling's fault.
    func testAWrongSizeMaskIsBlamedItself() throws {
        let root = try synthetic()
        let mask = root.appendingPathComponent("train/agnostic-mask/000002_00_mask.png")
        try ImageIO.write(rectMask(16, 12, 2, 8, 2, 8), to: mask)
        let errors = check(root).errors
        XCTAssertEqual(errors.count, 1, errors.report)
        XCTAssertEqual(errors.first?.error.path, mask.path)
        XCTAssertTrue(errors.report.contains("expected 32×24 like the person image"), errors.report)
    }

    func testSymlinkLoopAndDanglingLinkAreNamed() throws {
        let root = try synthetic()
        let cloth = root.appendingPathComponent("train/cloth")
        try FileManager.default.removeItem(at: cloth.appendingPathComponent("000000_00.png"))
        try FileManager.default.createSymbolicLink(atPath: cloth.appendingPathComponent("000000_00.png").path,
                                                   withDestinationPath: "000000_00.png")
        try FileManager.default.removeItem(at: cloth.appendingPathComponent("000001_00.png"))
        try FileManager.default.createSymbolicLink(atPath: cloth.appendingPathComponent("000001_00.png").path,
                                                   withDestinationPath: "gone.png")
        let report = check(root).errors.report
        XCTAssertTrue(report.contains("000000_00.png' (reference image): unreadable: a symbolic link loop"), report)
        XCTAssertTrue(report.contains("000001_00.png' (reference image): unreadable: a symbolic link to 'gone.png', which does not exist"), report)
        XCTAssertFalse(report.contains("missing"), report)
    }

    func testATruncatedPNGIsFoundFromHeadersAlone() throws {
        let root = try synthetic()
        let person = root.appendingPathComponent("train/image/000002_00.png")
        let bytes = try Data(contentsOf: person)
        try bytes.prefix(bytes.count - 20).write(to: person)
        let errors = check(root, decode: false).errors
        XCTAssertEqual(errors.count, 1, errors.report)
        XCTAssertTrue(errors.report.contains("PNG is truncated") && errors.report.contains("000002_00.png"), errors.report)
        // Whole files pass.
        XCTAssertTrue(check(try synthetic(), decode: false).errors.isEmpty)
    }
}
