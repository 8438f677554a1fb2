// The VITON-HD reader on tiny folders: sample fields and their normalisation, pairing, the loss
// mask source, check() listing every problem with line numbers, and load errors that name the
// file and field.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import LeffaTensor

final class VitonHDTests: XCTestCase {
    func testSampleFieldsAndNormalisation() throws {
        let root = try scratchDirectory(self)
        try makeVitonFixture(root, names: ["00000_00.jpg", "00001_00.jpg"])
        let ds = VitonHDDataset(root: root)
        XCTAssertEqual(ds.count, 2)
        XCTAssertEqual(ds.id(at: 1), "vitonhd/train/00001_00.jpg/00001_00.jpg")
        let problems = ds.check()
        XCTAssertTrue(problems.errors.isEmpty, problems.report)

        let s = try ds.sample(at: 0, size: fixtureSize)
        XCTAssertEqual(s.image.shape, [3, 64, 48]); XCTAssertEqual(s.reference.shape, [3, 64, 48])
        XCTAssertEqual(s.inpaintMask.shape, [1, 64, 48]); XCTAssertEqual(s.densepose.shape, [3, 64, 48])
        XCTAssertEqual(s.maskedImage.shape, [3, 64, 48]); XCTAssertEqual(s.lossMask.shape, [1, 64, 48])
        XCTAssertNil(s.flow)
        // Pixels in [-1, 1] exactly as decoded.
        let person = try ImageIO.read(root.appendingPathComponent("train/image/00000_00.jpg"))
        XCTAssertTrue(s.image.scalars == person.tensor().scalars, "tensors differ")
        // Mask: rows 20..<44, columns 12..<36. Masked image = image × (mask < 0.5).
        let n = 64 * 48
        for c in 0..<3 { for y in 0..<64 { for x in 0..<48 {
            let i = y * 48 + x
            let inside = (20..<44).contains(y) && (12..<36).contains(x)
            XCTAssertEqual(s.inpaintMask.data[i], inside ? 1 : 0)
            XCTAssertEqual(s.maskedImage.data[c * n + i], inside ? 0 : s.image.data[c * n + i])
        } } }
        // Densepose: (255, 0, 128) → (1, −1, 128/127.5 − 1); black background → −1.
        XCTAssertEqual(s.densepose.data[0], -1)
        let d = 20 * 48 + 20
        XCTAssertEqual(s.densepose.data[d], 1); XCTAssertEqual(s.densepose.data[n + d], -1)
        XCTAssertEqual(s.densepose.data[2 * n + d], 128 / 127.5 - 1, accuracy: 1e-6)
        XCTAssertTrue(s.densepose.scalars.allSatisfy { $0 >= -1 && $0 <= 1 })
        // No parsing maps: the loss mask is the agnostic mask, and check() says so.
        XCTAssertTrue(s.lossMask.scalars == s.inpaintMask.scalars, "tensors differ")
        XCTAssertTrue(problems.warnings.contains { $0.error.path.hasSuffix("image-parse-v3") }, problems.report)

        // At the low-res stage everything halves; masks stay binary.
        let low = try ds.sample(at: 0, size: Size(height: 32, width: 24))
        XCTAssertEqual(low.image.shape, [3, 32, 24])
        XCTAssertEqual(low.inpaintMask.scalars.reduce(0, +), 12 * 12)
    }

    func testPairingAndParsingMaps() throws {
        let root = try scratchDirectory(self)
        try makeVitonFixture(root, names: ["a.jpg", "b.jpg"])
        try writeText("a.jpg b.jpg\nb.jpg a.jpg\n", root.appendingPathComponent("train_pairs.txt"))
        let paired = VitonHDDataset(root: root, pairing: .paired)
        let unpaired = VitonHDDataset(root: root, pairing: .unpaired)
        XCTAssertEqual(paired.recipe(at: 0).reference.lastPathComponent, "a.jpg")
        XCTAssertEqual(unpaired.recipe(at: 0).reference.lastPathComponent, "b.jpg")
        XCTAssertEqual(unpaired.id(at: 0), "vitonhd/train/a.jpg/b.jpg")
        let ref = try unpaired.sample(at: 0, size: fixtureSize).reference
        XCTAssertTrue(try ref.scalars == ImageIO.read(root.appendingPathComponent("train/cloth/b.jpg")).tensor().scalars, "tensors differ")

        // Parsing labels 5, 6, 7 make the loss mask; other labels do not.
        var parse = Image(height: 64, width: 48, channels: 1)
        for x in 0..<48 { parse[30, x, 0] = 5; parse[31, x, 0] = 7; parse[32, x, 0] = 13; parse[33, x, 0] = 6 }
        let palette: [(UInt8, UInt8, UInt8)] = (0..<20).map { (UInt8($0 * 10), 0, 0) }
        try ImageIO.writeBytes(ImageIO.encodePalettePNG(indices: parse, palette: palette),
                               to: root.appendingPathComponent("train/image-parse-v3/a.png"))
        let ds = VitonHDDataset(root: root)
        let s = try ds.sample(at: 0, size: fixtureSize)
        XCTAssertEqual(s.lossMask.scalars.reduce(0, +), 3 * 48)
        XCTAssertEqual(s.lossMask.data[32 * 48], 0)
        // b has no parsing map: a per-sample warning, and it falls back to the agnostic mask.
        let problems = ds.check()
        XCTAssertTrue(problems.errors.isEmpty, problems.report)
        XCTAssertEqual(problems.warnings.count, 1, problems.report)
        XCTAssertEqual(problems.warnings.first?.pairIndex, 1)
        XCTAssertEqual(try ds.sample(at: 1, size: fixtureSize).lossMask.scalars.reduce(0, +), 24 * 24)
    }

    func testCheckListsEveryProblemWithLineNumbers() throws {
        let root = try scratchDirectory(self)
        let names = ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "p4.jpg"]
        try makeVitonFixture(root, names: names)
        let d = root.appendingPathComponent("train")
        // Line 1 fine; p1's agnostic mask missing; line 3 malformed; p2's person image truncated;
        // line 5 names an absent image; p3's densepose has the wrong size; blank line and comment
        // ignored; p4's cloth is not an image at all.
        try FileManager.default.removeItem(at: d.appendingPathComponent("agnostic-mask/p1_mask.png"))
        let p2 = try ImageIO.readBytes(d.appendingPathComponent("image/p2.jpg"))
        try ImageIO.writeBytes(Array(p2.prefix(p2.count / 2)), to: d.appendingPathComponent("image/p2.jpg"))
        try write(gradientImage(32, 24), d.appendingPathComponent("image-densepose/p3.png"))
        try writeText("not an image", d.appendingPathComponent("cloth/p4.jpg"))
        try writeText("""
            p0.jpg p0.jpg
            p1.jpg p1.jpg
            p2.jpg p2.jpg extra
            p2.jpg p2.jpg
            ghost.jpg ghost.jpg

            # a comment
            p3.jpg p3.jpg
            p4.jpg p4.jpg
            """, root.appendingPathComponent("train_pairs.txt"))
        let ds = VitonHDDataset(root: root)
        XCTAssertEqual(ds.count, 6)
        let problems = ds.check()
        let errors = problems.errors
        func has(_ kind: DataError.Kind, _ file: String, line: Int, field: String? = nil) {
            XCTAssertTrue(errors.contains { $0.error.kind == kind && $0.error.path.hasSuffix(file) && $0.error.line == line
                                            && (field == nil || $0.error.field == field) },
                          "no \(kind) for \(file) at line \(line):\n\(problems.report)")
        }
        has(.missing, "agnostic-mask/p1_mask.png", line: 2, field: SampleField.inpaintMask)
        has(.malformed, "train_pairs.txt", line: 3)
        has(.corrupt, "image/p2.jpg", line: 4, field: SampleField.image)
        has(.missing, "image/ghost.jpg", line: 5, field: SampleField.image)
        has(.missing, "cloth/ghost.jpg", line: 5, field: SampleField.reference)
        has(.missing, "agnostic-mask/ghost_mask.png", line: 5)
        has(.missing, "image-densepose/ghost.jpg", line: 5, field: SampleField.densepose)
        has(.wrongSize, "image-densepose/p3.png", line: 8, field: SampleField.densepose)
        has(.unsupported, "cloth/p4.jpg", line: 9, field: SampleField.reference)
        XCTAssertEqual(errors.count, 9, problems.report)
        // The messages say what was expected.
        let sizeProblem = errors.first { $0.error.kind == .wrongSize }!
        XCTAssertTrue("\(sizeProblem)".contains("32×24") && "\(sizeProblem)".contains("64×48"), "\(sizeProblem)")
        XCTAssertTrue("\(errors.first { $0.error.kind == .malformed }!)".contains("3 field(s)"))
        // Header-only checking misses the truncated JPEG but finds the rest.
        XCTAssertEqual(ds.check(CheckOptions(decodeImages: false)).errors.count, 8)
        // Results do not depend on the thread count.
        let saved = Parallel.threads
        Parallel.threads = 1
        XCTAssertEqual(ds.check(), problems)
        Parallel.threads = saved
    }

    func testCheckWarnsAboutSizeAndAspect() throws {
        let root = try scratchDirectory(self)
        try makeVitonFixture(root, names: ["a.jpg"])
        let ds = VitonHDDataset(root: root)
        let w = ds.check(CheckOptions(expectedSize: Size(height: 1024, width: 768), targetSize: Size(height: 64, width: 64))).warnings
        // Four 64×48 files are not 1024×768; person and cloth differ in aspect from 64×64.
        XCTAssertEqual(w.filter { $0.error.reason.contains("expected to be 1024×768") }.count, 4, w.report)
        XCTAssertEqual(w.filter { $0.error.reason.contains("center-crop") }.count, 2, w.report)
        // And the loader applies that policy: a 64×64 sample from 64×48 images is a centre crop.
        let s = try ds.sample(at: 0, size: Size(height: 64, width: 64))
        XCTAssertEqual(s.image.shape, [3, 64, 64])
    }

    func testLoadErrorsNameFileFieldAndLine() throws {
        let root = try scratchDirectory(self)
        try makeVitonFixture(root, names: ["a.jpg", "b.jpg"])
        try FileManager.default.removeItem(at: root.appendingPathComponent("train/agnostic-mask/b_mask.png"))
        let ds = VitonHDDataset(root: root)
        let e = assertDataError(.missing, ["b_mask.png", "inpainting mask", "line 2 of train_pairs.txt"]) {
            try ds.sample(at: 1, size: fixtureSize)
        }
        XCTAssertEqual(e?.field, SampleField.inpaintMask)
        assertDataError(.invalidRequest, ["index 2"]) { try ds.sample(at: 2, size: fixtureSize) }
        // A missing pairs file or split folder is reported when opening, not a crash.
        let empty = VitonHDDataset(root: root.appendingPathComponent("nowhere"))
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(empty.check().errors.count, 2, empty.check().report)
    }
}
