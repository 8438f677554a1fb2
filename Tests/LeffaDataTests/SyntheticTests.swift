// The synthetic try-on set: deterministic bytes for a seed, readable by the VITON-HD reader with
// no problems, and — the point of it — ground-truth flows under which bilinear grid sampling of
// the cloth (align_corners=True) reproduces the person's garment pixels.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import LeffaTensor

final class SyntheticTests: XCTestCase {
    func allFiles(_ root: URL) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)!
        for case let u as URL in e where !directoryExists(u) {
            out[String(u.path.dropFirst(root.path.count))] = try ImageIO.readBytes(u)
        }
        return out
    }

    func testSameSeedSameBytes() throws {
        let dir = try scratchDirectory(self)
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b"), c = dir.appendingPathComponent("c")
        try generateSynthetic(out: a, count: 3, height: 64, width: 48, seed: 11)
        let saved = Parallel.threads
        Parallel.threads = 1
        try generateSynthetic(out: b, count: 3, height: 64, width: 48, seed: 11)
        Parallel.threads = saved
        try generateSynthetic(out: c, count: 3, height: 64, width: 48, seed: 12)
        let fa = try allFiles(a), fb = try allFiles(b), fc = try allFiles(c)
        XCTAssertEqual(fa.count, 3 * 7 + 2, fa.keys.sorted().joined(separator: "\n"))
        XCTAssertEqual(fa, fb)
        XCTAssertNotEqual(fa["/train/image/000000_00.png"], fc["/train/image/000000_00.png"])
        XCTAssertNotEqual(fa["/train/image/000000_00.png"], fa["/train/image/000001_00.png"])
    }

    func testReaderSeesACleanSet() throws {
        let root = try scratchDirectory(self)
        try generateSynthetic(out: root, count: 4, height: 64, width: 48, seed: 3)
        let ds = openDataset(.synthetic, root: root)
        XCTAssertEqual(ds.count, 4)
        XCTAssertEqual(ds.id(at: 2), "synthetic/train/000002_00.png/000002_00.png")
        let problems = ds.check(CheckOptions(expectedSize: fixtureSize))
        XCTAssertTrue(problems.isEmpty, problems.report)
        let s = try ds.sample(at: 1, size: fixtureSize)
        XCTAssertEqual(s.flow?.shape, [64, 48, 2])
        XCTAssertEqual(s.flowValid?.shape, [1, 64, 48])
        // Loss mask (parsing label 5) = flow-valid region = garment; inside the agnostic mask.
        XCTAssertTrue(s.lossMask.scalars == s.flowValid!.scalars, "tensors differ")
        let garment = s.lossMask.scalars.reduce(0, +)
        XCTAssertGreaterThan(garment, 0.1 * 64 * 48, "the garment should cover a good part of the person")
        for i in 0..<(64 * 48) where s.lossMask.data[i] == 1 { XCTAssertEqual(s.inpaintMask.data[i], 1) }
        XCTAssertGreaterThan(s.inpaintMask.scalars.reduce(0, +), garment, "agnostic mask is dilated")
        // Densepose has several distinct part colours besides black.
        let dense = try ImageIO.read(root.appendingPathComponent("train/image-densepose/000001_00.png"))
        let colours = Set(stride(from: 0, to: dense.pixels.count, by: 3).map { Array(dense.pixels[$0..<$0 + 3]) })
        XCTAssertGreaterThanOrEqual(colours.count, 4)
        // Batching stacks the flows too.
        let batch = ImageBatch([s, try ds.sample(at: 0, size: fixtureSize)])
        XCTAssertEqual(batch.image.shape, [2, 3, 64, 48])
        XCTAssertEqual(batch.flow?.shape, [2, 64, 48, 2])
        XCTAssertEqual(batch.indices, [1, 0])
    }

    /// max |grid_sample(cloth, flow) − person| over valid pixels, in 8-bit levels.
    func flowError(_ root: URL, _ name: String, alignCorners: Bool = true, perturb: Float = 0) throws -> (max: Float, valid: Int) {
        let d = root.appendingPathComponent("train")
        let cloth = try ImageIO.read(d.appendingPathComponent("cloth/\(name).png")).tensor(.unit)
        let person = try ImageIO.read(d.appendingPathComponent("image/\(name).png"))
        let gt = try GroundTruthFlow.read(d.appendingPathComponent("flow/\(name).safetensors"), expected: person.size)
        let h = person.height, w = person.width
        var worst: Float = 0, valid = 0
        for i in 0..<h { for j in 0..<w where gt.valid.data[i * w + j] == 1 {
            valid += 1
            let x = gt.flow.data[2 * (i * w + j)] + perturb, y = gt.flow.data[2 * (i * w + j) + 1]
            let v = gridSampleReference(cloth.scalars, channels: 3, height: h, width: w, x: x, y: y, alignCorners: alignCorners)
            for k in 0..<3 { worst = max(worst, abs(v[k] * 255 - Float(person[i, j, k]))) }
        } }
        return (worst, valid)
    }

    func testGroundTruthFlowReproducesTheGarment() throws {
        let root = try scratchDirectory(self)
        let names = try generateSynthetic(out: root, count: 4, height: 64, width: 48, seed: 5)
        for n in names {
            let ok = try flowError(root, n)
            XCTAssertGreaterThan(ok.valid, 300)
            XCTAssertLessThanOrEqual(ok.max, 0.5 + 1e-3, "\(n): the person's garment must be the cloth sampled at the flow")
            // The test can fail: the other corner convention, or a flow off by one pixel, is far off.
            XCTAssertGreaterThan(try flowError(root, n, alignCorners: false).max, 20, n)
            XCTAssertGreaterThan(try flowError(root, n, perturb: 2 / 47).max, 20, n)
        }
        // The warp is not the identity: the garment moves.
        let gt = try GroundTruthFlow.read(root.appendingPathComponent("train/flow/000000_00.safetensors"))
        var moved: Float = 0
        for i in 0..<64 { for j in 0..<48 {
            moved = max(moved, abs(gt.flow.data[2 * (i * 48 + j)] - (Float(2 * j) / 47 - 1)))
        } }
        XCTAssertGreaterThan(moved, 0.3)
    }

    func testFlowFollowsResizing() throws {
        let root = try scratchDirectory(self)
        try generateSynthetic(out: root, count: 1, height: 128, width: 96, seed: 9)
        let ds = VitonHDDataset(root: root, name: "synthetic")
        let full = try ds.sample(at: 0, size: Size(height: 128, width: 96))
        let gt = try GroundTruthFlow.read(root.appendingPathComponent("train/flow/000000_00.safetensors"))
        XCTAssertTrue(full.flow!.scalars == gt.flow.scalars, "no resize: the flow is passed through")
        // At half size the fine textures alias, so the garment is not reproduced exactly; but the
        // resampled flow must still be the best alignment: shifting it by a quarter or half pixel
        // in any direction makes the mean error of grid-sampling the resized cloth larger.
        let half = try ds.sample(at: 0, size: Size(height: 64, width: 48))
        let H = 64, W = 48, cloth = half.reference.scalars
        func error(_ sx: Float, _ sy: Float) -> Float {
            var total: Float = 0, n: Float = 0
            for i in 0..<H { for j in 0..<W where half.flowValid!.data[i * W + j] == 1 {
                let x = half.flow!.data[2 * (i * W + j)] + sx * 2 / Float(W - 1)
                let y = half.flow!.data[2 * (i * W + j) + 1] + sy * 2 / Float(H - 1)
                let v = gridSampleReference(cloth, channels: 3, height: H, width: W, x: x, y: y)
                for k in 0..<3 { total += abs(v[k] - half.image.data[k * H * W + i * W + j]); n += 1 }
            } }
            return total / n
        }
        let best = error(0, 0)
        for sy in [-0.5, -0.25, 0, 0.25, 0.5] as [Float] {
            for sx in [-0.5, -0.25, 0, 0.25, 0.5] as [Float] where sx != 0 || sy != 0 {
                XCTAssertLessThan(best, error(sx, sy), "shift (\(sx), \(sy)) px aligns better than the resampled flow")
            }
        }
    }

    func testJPEGVariantIsRealJPEG() throws {
        let root = try scratchDirectory(self)
        try generateSynthetic(out: root, count: 2, height: 64, width: 48, seed: 1, format: .jpeg)
        let bytes = try ImageIO.readBytes(root.appendingPathComponent("train/image/000000_00.jpg"))
        XCTAssertEqual(ImageFormat.sniff(bytes), .jpeg)
        let pairs = String(decoding: try ImageIO.readBytes(root.appendingPathComponent("train_pairs.txt")), as: UTF8.self)
        XCTAssertEqual(pairs, "000000_00.jpg 000000_00.jpg\n000001_00.jpg 000001_00.jpg\n")
        let ds = VitonHDDataset(root: root)
        XCTAssertTrue(ds.check().isEmpty, ds.check().report)
        XCTAssertNotNil(try ds.sample(at: 1, size: Size(height: 32, width: 24)).flow)
    }

    /// The ramp texture changes only the garment's colours (same shapes, masks and flows), the
    /// flow still reproduces the garment, and colours are nearly unique, so matching a colour is
    /// matching a position (the point of the texture: a warp loss whose minimum is the true flow).
    func testRampTexture() throws {
        let dir = try scratchDirectory(self)
        let a = dir.appendingPathComponent("pattern"), b = dir.appendingPathComponent("ramp")
        let names = try generateSynthetic(out: a, count: 2, height: 64, width: 48, seed: 4)
        try generateSynthetic(out: b, count: 2, height: 64, width: 48, seed: 4, texture: .ramp)
        let fa = try allFiles(a), fb = try allFiles(b)
        for n in names {
            for f in ["flow/\(n).safetensors", "cloth-mask/\(n).png", "agnostic-mask/\(n)_mask.png", "image-parse-v3/\(n).png"] {
                XCTAssertEqual(fa["/train/" + f], fb["/train/" + f], f)
            }
            XCTAssertNotEqual(fa["/train/cloth/\(n).png"], fb["/train/cloth/\(n).png"])
            let ok = try flowError(b, n)
            XCTAssertGreaterThan(ok.valid, 300)
            XCTAssertLessThanOrEqual(ok.max, 0.5 + 1e-3, "\(n): the person's garment must be the cloth sampled at the flow")
            // A ramp is smooth, yet a 2-pixel shift is still far off.
            XCTAssertGreaterThan(try flowError(b, n, perturb: 2 / 47).max, 3, n)
            // Colours inside the garment are nearly all distinct.
            let cloth = try ImageIO.read(b.appendingPathComponent("train/cloth/\(n).png"))
            let mask = try ImageIO.read(b.appendingPathComponent("train/cloth-mask/\(n).png"))
            var colours = Set<[UInt8]>(), pixels = 0
            for i in 0..<64 { for j in 0..<48 where mask[i, j, 0] > 127 {
                pixels += 1; colours.insert([cloth[i, j, 0], cloth[i, j, 1], cloth[i, j, 2]])
            } }
            XCTAssertGreaterThan(Double(colours.count), 0.95 * Double(pixels), n)
        }
        let meta = String(decoding: fb["/synthetic.json"]!, as: UTF8.self)
        XCTAssertTrue(meta.contains("\"texture\": \"ramp\""), meta)
        XCTAssertFalse(String(decoding: fa["/synthetic.json"]!, as: UTF8.self).contains("texture"))
    }

    func testOrderAndSharding() {
        let p = epochPermutation(count: 10, seed: 1, epoch: 0)
        XCTAssertEqual(p.sorted(), Array(0..<10))
        XCTAssertEqual(p, epochPermutation(count: 10, seed: 1, epoch: 0))
        XCTAssertNotEqual(p, epochPermutation(count: 10, seed: 1, epoch: 1))
        XCTAssertNotEqual(p, Array(0..<10))
        let batch = Array(p.prefix(5))
        let parts = (0..<2).map { shard(batch, rank: $0, worldSize: 2) }
        XCTAssertEqual(parts[0].count, 3); XCTAssertEqual(parts[1].count, 2)
        XCTAssertEqual(Set(parts[0] + parts[1]), Set(batch))
    }
}
