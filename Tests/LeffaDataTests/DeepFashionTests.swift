// The DeepFashion pose-transfer reader: CSV pairs, reference = source, target = image, the whole
// image generated, loss mask = the target person from its densepose.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import LeffaTensor

final class DeepFashionTests: XCTestCase {
    func makeFixture(_ root: URL) throws {
        for (k, n) in ["a.jpg", "b.jpg", "c.jpg"].enumerated() {
            try write(gradientImage(64, 48, seed: k), root.appendingPathComponent("train/\(n)"))
        }
        var dense = Image(height: 64, width: 48, channels: 3)
        for y in 8..<56 { for x in 10..<30 { dense[y, x, 0] = 200; dense[y, x, 1] = 90; dense[y, x, 2] = 40 } }
        try write(dense, root.appendingPathComponent("train_densepose/b.png"))
        try writeText("from,to\na.jpg,b.jpg\nb.jpg,c.jpg\nc.jpg\n", root.appendingPathComponent("fasion-resize-pairs-train.csv"))
    }

    func testPoseTransferSample() throws {
        let root = try scratchDirectory(self)
        try makeFixture(root)
        let ds = DeepFashionDataset(root: root)
        XCTAssertEqual(ds.count, 2)
        XCTAssertEqual(ds.id(at: 0), "deepfashion/train/a.jpg/b.jpg")
        let s = try ds.sample(at: 0, size: fixtureSize)
        XCTAssertTrue(try s.image.scalars == ImageIO.read(root.appendingPathComponent("train/b.jpg")).tensor().scalars, "tensors differ")
        XCTAssertTrue(try s.reference.scalars == ImageIO.read(root.appendingPathComponent("train/a.jpg")).tensor().scalars, "tensors differ")
        XCTAssertTrue(s.inpaintMask.scalars.allSatisfy { $0 == 1 })
        XCTAssertTrue(s.maskedImage.scalars.allSatisfy { $0 == 0 })
        XCTAssertEqual(s.lossMask.scalars.reduce(0, +), 48 * 20)
        XCTAssertEqual(s.lossMask.data[20 * 48 + 15], 1)
        XCTAssertEqual(s.densepose.data[20 * 48 + 15], 200 / 127.5 - 1, accuracy: 1e-6)

        // c.jpg has no densepose: blank input, whole-image loss mask, one warning; the line
        // with one field is an error with its number.
        let problems = ds.check()
        XCTAssertEqual(problems.errors.count, 1, problems.report)
        XCTAssertEqual(problems.errors.first?.error.line, 4)
        XCTAssertEqual(problems.warnings.count, 1, problems.report)
        XCTAssertEqual(problems.warnings.first?.pairIndex, 1)
        let t = try ds.sample(at: 1, size: fixtureSize)
        XCTAssertTrue(t.densepose.scalars.allSatisfy { $0 == -1 })
        XCTAssertTrue(t.lossMask.scalars.allSatisfy { $0 == 1 })
    }

    func testPairsFileCandidatesAndIndexColumn() throws {
        let root = try scratchDirectory(self)
        try makeFixture(root)
        try FileManager.default.removeItem(at: root.appendingPathComponent("fasion-resize-pairs-train.csv"))
        XCTAssertEqual(DeepFashionDataset(root: root).indexProblems.errors.count, 1)
        try writeText(",from,to\n0,a.jpg,b.jpg\n1,b.jpg,a.jpg\nx,y.jpg,z.jpg\n", root.appendingPathComponent("train_pairs.csv"))
        let ds = DeepFashionDataset(root: root)
        XCTAssertEqual(ds.count, 2)
        XCTAssertEqual(ds.id(at: 1), "deepfashion/train/b.jpg/a.jpg")
        XCTAssertEqual(ds.indexProblems.errors.map(\.error.line), [4])
    }
}
