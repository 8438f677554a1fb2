// The DressCode reader: per-category folders, masks derived from label maps when agnostic masks
// are absent, part-label densepose coloured, root-level pair lists with a category column.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import LeffaTensor

final class DressCodeTests: XCTestCase {
    /// A label map: head rows 0..<16 (columns 16..<32), upper clothes rows 16..<40 (columns 12..<36), arms beside
    /// it (columns 4..<12 and 36..<44), pants rows 40..<56, legs 56..<64.
    func labelMap() -> Image {
        var l = Image(height: 64, width: 48, channels: 1)
        for y in 0..<64 { for x in 0..<48 {
            var v: UInt8 = 0
            if y < 16 && (16..<32).contains(x) { v = 11 }
            else if (16..<40).contains(y) && (12..<36).contains(x) { v = 4 }
            else if (16..<36).contains(y) && (4..<12).contains(x) { v = 14 }
            else if (16..<36).contains(y) && (36..<44).contains(x) { v = 15 }
            else if (40..<56).contains(y) && (12..<36).contains(x) { v = 6 }
            else if y >= 56 && (12..<36).contains(x) { v = 12 }
            l[y, x, 0] = v
        } }
        return l
    }

    func makeCategory(_ root: URL, _ cat: String, ids: [String], pairsFile: Bool = true) throws {
        let d = root.appendingPathComponent(cat)
        for (k, id) in ids.enumerated() {
            try write(gradientImage(64, 48, seed: k), d.appendingPathComponent("images/\(id)_0.jpg"))
            try write(gradientImage(64, 48, seed: k + 50), d.appendingPathComponent("images/\(id)_1.jpg"))
            try write(labelMap(), d.appendingPathComponent("label_maps/\(id)_4.png"))
            var dense = Image(height: 64, width: 48, channels: 1)
            for y in 10..<60 { for x in 8..<40 { dense[y, x, 0] = 2 } }  // DensePose part 2 (torso)
            try write(dense, d.appendingPathComponent("dense/\(id)_5.png"))
        }
        if pairsFile {
            try writeText(ids.map { "\($0)_0.jpg \($0)_1.jpg\n" }.joined(), d.appendingPathComponent("train_pairs.txt"))
        }
    }

    func testDerivedMasksAndDensepose() throws {
        let root = try scratchDirectory(self)
        try makeCategory(root, "upper_body", ids: ["000001", "000002"])
        let ds = DressCodeDataset(root: root, categories: [.upperBody])
        XCTAssertEqual(ds.count, 2)
        XCTAssertTrue(ds.check().isEmpty, ds.check().report)
        XCTAssertEqual(ds.id(at: 0), "dresscode/upper_body/train/000001_0.jpg/000001_1.jpg")
        let s = try ds.sample(at: 0, size: fixtureSize)
        // Loss mask: exactly the upper clothes.
        let labels = labelMap()
        for i in 0..<(64 * 48) { XCTAssertEqual(s.lossMask.data[i], labels.pixels[i] == 4 ? 1 : 0) }
        // Inpainting mask: garment + arms, dilated by 64/64 = 1 pixel, head removed.
        let m = s.inpaintMask
        XCTAssertEqual(m.data[20 * 48 + 20], 1)       // garment
        XCTAssertEqual(m.data[20 * 48 + 5], 1)        // left arm
        XCTAssertEqual(m.data[20 * 48 + 3], 1)        // one pixel outside the arm: dilation
        XCTAssertEqual(m.data[20 * 48 + 2], 0)        // two pixels outside: not
        XCTAssertEqual(m.data[15 * 48 + 14], 1)       // one row above the garment: dilation
        XCTAssertEqual(m.data[15 * 48 + 20], 0)       // ... except into the head, never masked
        XCTAssertEqual(m.data[50 * 48 + 20], 0)       // pants stay
        // Densepose part labels are coloured; background stays black (−1).
        XCTAssertEqual(s.densepose.data[0], -1)
        let torso = colorizeDenseposeLabels(Image(height: 1, width: 1, channels: 1, pixels: [2]))
        XCTAssertEqual(s.densepose.data[30 * 48 + 20], Float(torso.pixels[0]) / 127.5 - 1, accuracy: 1e-6)
        XCTAssertNotEqual(torso.pixels, [0, 0, 0])
    }

    func testAgnosticMasksWinWhenPresentAndPairingUsesOwnGarment() throws {
        let root = try scratchDirectory(self)
        try makeCategory(root, "upper_body", ids: ["000001", "000002"])
        try write(rectMask(64, 48, 0, 8, 0, 8), root.appendingPathComponent("upper_body/agnostic_masks/000001_0.png"))
        try writeText("000001_0.jpg 000002_1.jpg\n", root.appendingPathComponent("upper_body/test_pairs_unpaired.txt"))
        try writeText("000001_0.jpg 000001_1.jpg\n", root.appendingPathComponent("upper_body/test_pairs_paired.txt"))
        let unpaired = DressCodeDataset(root: root, split: "test", pairing: .unpaired, categories: [.upperBody])
        XCTAssertEqual(unpaired.recipe(at: 0).reference.lastPathComponent, "000002_1.jpg")
        XCTAssertEqual(try unpaired.sample(at: 0, size: fixtureSize).inpaintMask.scalars.reduce(0, +), 64)
        let paired = DressCodeDataset(root: root, split: "test", pairing: .paired, categories: [.upperBody])
        XCTAssertEqual(paired.recipe(at: 0).reference.lastPathComponent, "000001_1.jpg")
    }

    func testRootLevelPairsWithCategoryColumnAndProblems() throws {
        let root = try scratchDirectory(self)
        try makeCategory(root, "upper_body", ids: ["000001"], pairsFile: false)
        try makeCategory(root, "lower_body", ids: ["000010"], pairsFile: false)
        try FileManager.default.removeItem(at: root.appendingPathComponent("lower_body/label_maps/000010_4.png"))
        try writeText("""
            000001_0.jpg 000001_1.jpg upper_body
            000010_0.jpg 000010_1.jpg 1
            000011_0.jpg 000011_1.jpg hats
            000012_0.jpg
            """, root.appendingPathComponent("train_pairs.txt"))
        let ds = DressCodeDataset(root: root, categories: [.upperBody, .lowerBody])
        XCTAssertEqual(ds.count, 2)
        XCTAssertEqual(ds.id(at: 1), "dresscode/lower_body/train/000010_0.jpg/000010_1.jpg")
        let problems = ds.check()
        let errors = problems.errors
        XCTAssertTrue(errors.contains { $0.error.kind == .malformed && $0.error.line == 3 && $0.error.reason.contains("hats") }, problems.report)
        XCTAssertTrue(errors.contains { $0.error.kind == .malformed && $0.error.line == 4 }, problems.report)
        // The missing label map feeds both masks of sample 1: reported once, with its line.
        XCTAssertTrue(errors.contains { $0.error.kind == .missing && $0.error.path.hasSuffix("000010_4.png") && $0.error.line == 2 }, problems.report)
        XCTAssertEqual(errors.count, 3, problems.report)
        assertDataError(.missing, ["000010_4.png", "line 2 of train_pairs.txt"]) { try ds.sample(at: 1, size: fixtureSize) }
        // A category folder that does not exist is an error too.
        let dresses = DressCodeDataset(root: root, categories: [.dresses])
        XCTAssertEqual(dresses.indexProblems.errors.count, 1)
    }
}
