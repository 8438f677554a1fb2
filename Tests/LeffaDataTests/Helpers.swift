// Shared by the LeffaData tests: scratch folders, small deterministic pictures, and builders of
// tiny dataset folders (64×48, like the real layouts) that individual tests then damage.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import LeffaTensor
import CPNG

/// Smooth RGB waves, different for each seed (JPEG-friendly but not flat).
func gradientImage(_ h: Int, _ w: Int, seed: Int = 0) -> Image {
    var img = Image(height: h, width: w, channels: 3)
    let s = Float(seed)
    for y in 0..<h {
        for x in 0..<w {
            let fx = Float(x), fy = Float(y)
            img[y, x, 0] = UInt8(128 + 100 * sin(fx * 0.2 + s))
            img[y, x, 1] = UInt8(128 + 100 * cos(fy * 0.15 + s * 0.7))
            img[y, x, 2] = UInt8(128 + 60 * sin((fx + fy) * 0.1 + s * 1.3))
        }
    }
    return img
}

/// Random bytes (every value occurs): the lossless round-trip case.
func noiseImage(_ h: Int, _ w: Int, channels: Int, seed: UInt64) -> Image {
    Image(height: h, width: w, channels: channels,
          pixels: (0..<(h * w * channels)).map { UInt8(truncatingIfNeeded: CounterRNG.bits(seed, UInt64($0))) })
}

/// A 0/255 mask with a filled rectangle (rows y0..<y1, columns x0..<x1).
func rectMask(_ h: Int, _ w: Int, _ y0: Int, _ y1: Int, _ x0: Int, _ x1: Int) -> Image {
    var m = Image(height: h, width: w, channels: 1)
    for y in y0..<y1 { for x in x0..<x1 { m[y, x, 0] = 255 } }
    return m
}

/// An RGBA PNG of one row (4 samples a pixel), through libpng's simplified writer.
func rgbaPNG(_ px: [UInt8], width: Int) -> [UInt8] {
    var img = png_image()
    img.version = leffa_png_image_version()
    img.width = UInt32(width); img.height = 1
    img.format = leffa_png_format_rgba()
    var size = 0
    _ = px.withUnsafeBytes { png_image_write_to_memory(&img, nil, &size, 0, $0.baseAddress, Int32(width * 4), nil) }
    var out = [UInt8](repeating: 0, count: size)
    _ = out.withUnsafeMutableBytes { o in px.withUnsafeBytes { png_image_write_to_memory(&img, o.baseAddress, &size, 0, $0.baseAddress, Int32(width * 4), nil) } }
    return Array(out.prefix(size))
}

func write(_ img: Image, _ url: URL, quality: Int = 95) throws { try ImageIO.write(img, to: url, quality: quality) }

func writeText(_ text: String, _ url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try ImageIO.writeBytes(Array(text.utf8), to: url)
}

let fixtureSize = Size(height: 64, width: 48)

/// A VITON-HD folder: <root>/train/{image,cloth,agnostic-mask,image-densepose}, train_pairs.txt.
/// Person/cloth are JPEG (.jpg, like the real set); densepose is a PNG (found by the reader's
/// extension fallback) with a known rectangle of colour (255, 0, 128) on black; the agnostic mask
/// covers rows 20..<44, columns 12..<36.
func makeVitonFixture(_ root: URL, names: [String], split: String = "train") throws {
    let d = root.appendingPathComponent(split)
    for (k, n) in names.enumerated() {
        let s = (n as NSString).deletingPathExtension
        try write(gradientImage(64, 48, seed: k), d.appendingPathComponent("image/\(n)"))
        try write(gradientImage(64, 48, seed: k + 100), d.appendingPathComponent("cloth/\(n)"))
        try write(rectMask(64, 48, 20, 44, 12, 36), d.appendingPathComponent("agnostic-mask/\(s)_mask.png"))
        var dense = Image(height: 64, width: 48, channels: 3)
        for y in 10..<50 { for x in 10..<38 { dense[y, x, 0] = 255; dense[y, x, 1] = 0; dense[y, x, 2] = 128 } }
        try write(dense, d.appendingPathComponent("image-densepose/\(s).png"))
    }
    try writeText(names.map { "\($0) \($0)\n" }.joined(), root.appendingPathComponent("\(split)_pairs.txt"))
}

/// The call must throw a DataError of `kind` whose message contains every one of `fragments`.
@discardableResult
func assertDataError<T>(_ kind: DataError.Kind, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                        _ body: () throws -> T) -> DataError? {
    do {
        _ = try body()
        XCTFail("expected a \(kind) error mentioning \(fragments)", file: file, line: line)
    } catch let e as DataError {
        XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
        for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' does not mention '\(f)'", file: file, line: line) }
        return e
    } catch { XCTFail("not a DataError: \(error)", file: file, line: line) }
    return nil
}

/// Bilinear grid sampling with align_corners=True and zero padding, written independently of
/// the library's sampler: (C, H, W) planar floats at normalised (x, y).
func gridSampleReference(_ img: [Float], channels c: Int, height h: Int, width w: Int, x: Float, y: Float,
                         alignCorners: Bool = true) -> [Float] {
    let px = alignCorners ? (x + 1) * Float(w - 1) / 2 : ((x + 1) * Float(w) - 1) / 2
    let py = alignCorners ? (y + 1) * Float(h - 1) / 2 : ((y + 1) * Float(h) - 1) / 2
    let x0 = Int(floor(px)), y0 = Int(floor(py))
    let ax = px - Float(x0), ay = py - Float(y0)
    var out = [Float](repeating: 0, count: c)
    let corners = [(y0, x0, (1 - ay) * (1 - ax)), (y0, x0 + 1, (1 - ay) * ax), (y0 + 1, x0, ay * (1 - ax)), (y0 + 1, x0 + 1, ay * ax)]
    for (yy, xx, wgt) in corners where yy >= 0 && yy < h && xx >= 0 && xx < w {
        for k in 0..<c { out[k] += wgt * img[k * h * w + yy * w + xx] }
    }
    return out
}
