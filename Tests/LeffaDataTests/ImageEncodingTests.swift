// Every PNG and JPEG encoding found in copies of the datasets decodes to what Pillow's
// Image.open(f).convert("RGB") / ("L") gives, the published training code's reader: fixtures from
// Scripts/make_image_fixtures.py with Pillow's pixels (Fixtures/expected.json), Pillow's CMYK
// formula on every (ink, black) pair, and CMYK / YCCK JPEGs made here through libjpeg.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import CJPEG

/// One fixture file and what Pillow decodes it to (row-major bytes).
private struct Expected: Decodable {
    let file, mode: String
    let width, height: Int
    let rgb, gray: [Int]
    /// Only for 16-bit gray, where Pillow clips instead of keeping the high byte.
    let pillow_rgb: [Int]?
}

private struct ExpectedFile: Decodable {
    let source: String
    let files: [Expected]
}

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

private func expected() throws -> [Expected] {
    let url = fixtures.appendingPathComponent("expected.json")
    let e = try JSONDecoder().decode(ExpectedFile.self, from: Data(contentsOf: url))
    XCTAssertEqual(e.files.count, 24, "\(url.path): expected 24 files; rerun Scripts/make_image_fixtures.py")
    return e.files
}

/// Largest absolute difference between decoded bytes and the expected values.
private func maxDifference(_ got: [UInt8], _ want: [Int]) -> Int {
    guard got.count == want.count else { return .max }
    return zip(got, want).map { abs(Int($0) - $1) }.max() ?? 0
}

/// Pillow's RGB for stored (Adobe-inverted) CMYK samples, in real numbers: ink = 255 − stored,
/// nk = 255 − black = stored black, out = nk − round(ink · nk / 255). Written apart from the shim's
/// integer version; ink · nk / 255 is never a tie, so the rounding direction does not matter.
private func pillowRGB(cmyk s: [UInt8]) -> [Int] {
    let nk = Double(s[3])
    return (0..<3).map { Int(nk - ((255 - Double(s[$0])) * nk / 255).rounded()) }
}

/// `cmyk` samples (4 a pixel, stored as written) as a quality-100 JPEG: CMYK or YCCK, with or without
/// the Adobe APP14 marker (YCCK always has it), through the shim's encoder.
private func cmykJPEG(_ cmyk: [UInt8], height: Int, width: Int, ycck: Bool, adobe: Bool) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>? = nil
    var size: UInt = 0
    var err = [CChar](repeating: 0, count: 256)
    let rc = cmyk.withUnsafeBufferPointer { p in
        leffa_jpeg_encode_as(p.baseAddress, Int32(height), Int32(width), 4, 100, ycck ? 1 : 0, adobe ? 1 : 0, &out, &size, &err, 256)
    }
    if rc != 0 { throw DataError(.unsupported, path: "<CMYK encoder>", reason: String(cString: err)) }
    defer { free(out) }
    return Array(UnsafeBufferPointer(start: out, count: Int(size)))
}

final class ImageEncodingTests: XCTestCase {
    func testPNGsOfEveryColourTypeAndDepthMatchPillowExactly() throws {
        let pngs = try expected().filter { ImageFormat.sniff(try ImageIO.readBytes(fixtures.appendingPathComponent($0.file))) == .png }
        XCTAssertEqual(pngs.count, 18)
        for e in pngs {
            let url = fixtures.appendingPathComponent(e.file)
            let rgb = try ImageIO.read(url)
            XCTAssertEqual(rgb.size, Size(height: e.height, width: e.width), e.file)
            XCTAssertEqual(rgb.pixels.map(Int.init), e.rgb, "\(e.file) (Pillow mode \(e.mode)) as RGB")
            XCTAssertEqual(try ImageIO.read(url, channels: 1).pixels.map(Int.init), e.gray, "\(e.file) as gray")
            let stored = try ImageIO.read(url, channels: 0)
            XCTAssertEqual(stored.channels, e.file.hasPrefix("gray") ? 1 : 3, e.file)
            XCTAssertEqual(try ImageIO.inspect(url), ImageInfo(format: .png, size: rgb.size, channels: stored.channels, warning: nil), e.file)
            XCTAssertEqual(try ImageIO.inspect(url, decode: true).channels, stored.channels, e.file)
        }
        // 16-bit gray is the one place the readers depart from Pillow, which clips 40000 to 255.
        let gray16 = try XCTUnwrap(pngs.first { $0.file == "gray16.png" })
        XCTAssertNotEqual(gray16.pillow_rgb, gray16.rgb)
    }

    func testAlphaAndTransparencyAreDroppedAsPillowDoes() throws {
        // Against the opaque twin: same colours, whatever the alpha or tRNS said.
        let files = try Dictionary(uniqueKeysWithValues: expected().map { ($0.file, $0) })
        for (file, twin) in [("rgb8-trns.png", "rgb8.png"), ("gray8-trns.png", "gray8.png"), ("palette8-trns.png", "palette8.png"),
                             ("rgb8-gamma1.png", "rgb8.png"), ("rgb8-interlaced.png", "rgb8.png")] {
            XCTAssertEqual(try ImageIO.read(fixtures.appendingPathComponent(file)), try ImageIO.read(fixtures.appendingPathComponent(twin)), file)
            XCTAssertEqual(files[file]?.rgb, files[twin]?.rgb, "\(file): Pillow too")
        }
        // In memory: opaque red, transparent blue, half-transparent black keep their colours.
        let img = try ImageIO.decode(rgbaPNG([255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 0, 128], width: 3))
        XCTAssertEqual(img.pixels, [255, 0, 0, 0, 0, 255, 0, 0, 0])
    }

    func testJPEGsMatchPillow() throws {
        let jpegs = try expected().filter { ImageFormat.sniff(try ImageIO.readBytes(fixtures.appendingPathComponent($0.file))) == .jpeg }
        XCTAssertEqual(jpegs.count, 6)
        var worst = (difference: 0, file: "")
        for e in jpegs {
            let url = fixtures.appendingPathComponent(e.file)
            let rgb = try ImageIO.read(url)
            XCTAssertEqual(rgb.size, Size(height: e.height, width: e.width), e.file)
            // The fixtures were decoded by libjpeg-turbo 3.2 and match 2.1.5 exactly; another
            // libjpeg may round a sample differently. A wrong colour space or CMYK formula is off by tens.
            let d = max(maxDifference(rgb.pixels, e.rgb), maxDifference(try ImageIO.read(url, channels: 1).pixels, e.gray))
            XCTAssertLessThanOrEqual(d, 1, "\(e.file) (Pillow mode \(e.mode))")
            if d >= worst.difference { worst = (d, e.file) }
            XCTAssertEqual(try ImageIO.read(url, channels: 0).channels, e.mode == "L" ? 1 : 3, e.file)
            XCTAssertEqual(try ImageIO.inspect(url).channels, e.mode == "L" ? 1 : 3, e.file)
        }
        print("largest difference from Pillow's JPEG pixels: \(worst.difference) (\(worst.file))")
    }

    func testCMYKConversionIsPillowsBitForBit() throws {
        // cmyk-table.png: Pillow's convert("RGB") of (c, m, y, k) = (x, 255 − x, x, row), i.e.
        // every (ink, black) pair; the shim sees the stored, inverted samples 255 − value.
        let table = try ImageIO.read(fixtures.appendingPathComponent("cmyk-table.png"))
        XCTAssertEqual(table.size, Size(height: 256, width: 256))
        var mismatches = 0
        for k in 0..<256 {
            let stored = (0..<256).flatMap { x in [255 - x, x, 255 - x, 255 - k].map(UInt8.init) }
            var rgb = [UInt8](repeating: 0, count: 256 * 3)
            leffa_jpeg_cmyk_to_rgb(stored, &rgb, 256)
            let want = table.pixels[(k * 256 * 3)..<((k + 1) * 256 * 3)]
            mismatches += zip(rgb, want).filter { $0 != $1 }.count
            // The real-number formula agrees too.
            for x in stride(from: 0, to: 256, by: 17) {
                XCTAssertEqual(pillowRGB(cmyk: Array(stored[(4 * x)..<(4 * x + 4)])), rgb[(3 * x)..<(3 * x + 3)].map(Int.init), "k \(k), x \(x)")
            }
        }
        XCTAssertEqual(mismatches, 0, "samples differing from Pillow's cmyk2rgb")
    }

    func testCMYKAndYCCKJPEGsMadeThroughLibjpeg() throws {
        // 32×32 in four flat 16×16 quadrants, stored samples as Photoshop writes them (inverted).
        // Flat blocks survive quality 100 almost exactly; only YCCK's subsampled chroma blends
        // across the quadrants' edges (fancy upsampling), so the pixels compared are the inner
        // 12×12 of each quadrant.
        let quadrants: [[UInt8]] = [[255, 255, 255, 255], [40, 200, 255, 230], [255, 128, 10, 180], [90, 90, 90, 60]]
        var cmyk = [UInt8]()
        for y in 0..<32 { for x in 0..<32 { cmyk += quadrants[(y / 16) * 2 + x / 16] } }
        let inner = (0..<32).flatMap { y in (0..<32).map { x in (y, x) } }.filter { (2..<14).contains($0.0 % 16) && (2..<14).contains($0.1 % 16) }
        let want = inner.flatMap { pillowRGB(cmyk: quadrants[($0.0 / 16) * 2 + $0.1 / 16]) }
        XCTAssertEqual(Array(want[0..<3]), [255, 255, 255], "no ink, no black: white")
        func innerPixels(_ img: Image) -> [UInt8] { inner.flatMap { (y, x) in (0..<3).map { img[y, x, $0] } } }
        for (ycck, adobe) in [(false, true), (false, false), (true, true)] {
            let what = ycck ? "YCCK" : adobe ? "CMYK with Adobe marker" : "CMYK without Adobe marker"
            let bytes = try cmykJPEG(cmyk, height: 32, width: 32, ycck: ycck, adobe: adobe)
            let img = try ImageIO.decode(bytes, path: "cmyk.jpg")
            XCTAssertEqual(img.size, Size(height: 32, width: 32), what)
            XCTAssertLessThanOrEqual(maxDifference(innerPixels(img), want), 2, what)
            XCTAssertEqual(try ImageIO.decode(bytes, channels: 0).channels, 3, what)
            XCTAssertEqual(try ImageIO.decode(bytes, channels: 1), img.converted(toChannels: 1), what)
        }
        // Gray and RGB JPEGs through the same encoder: gray replicates into RGB.
        let gray = Image(height: 16, width: 16, channels: 1, pixels: (0..<256).map { UInt8($0 / 16 * 16) })
        let g = try ImageIO.decode(ImageIO.encodeJPEG(gray, quality: 100))
        XCTAssertEqual(g.channels, 3)
        XCTAssertEqual(g.converted(toChannels: 1).converted(toChannels: 3), g, "the three channels are equal")
        XCTAssertLessThanOrEqual(maxDifference(g.converted(toChannels: 1).pixels, gray.pixels.map(Int.init)), 2)
        let rgb = Image(height: 16, width: 16, channels: 3, pixels: (0..<256).flatMap { _ in [200, 30, 90] as [UInt8] })
        XCTAssertLessThanOrEqual(maxDifference(try ImageIO.decode(ImageIO.encodeJPEG(rgb, quality: 100)).pixels, rgb.pixels.map(Int.init)), 2)
    }

    func testFormatComesFromTheBytesNotTheName() throws {
        let pngAsJPG = fixtures.appendingPathComponent("png-named.jpg"), jpgAsPNG = fixtures.appendingPathComponent("jpeg-named.png")
        XCTAssertEqual(try ImageIO.inspect(pngAsJPG).format, .png)
        XCTAssertEqual(try ImageIO.inspect(jpgAsPNG).format, .jpeg)
        XCTAssertEqual(try ImageIO.read(pngAsJPG), try ImageIO.read(fixtures.appendingPathComponent("rgba8.png")))
        XCTAssertEqual(try ImageIO.read(jpgAsPNG), try ImageIO.read(fixtures.appendingPathComponent("rgb420.jpg")))
    }

    func testGrayIsPillowsFixedPointLuma() {
        // L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16, Pillow's convert("L") (values from Pillow 13);
        // (299 R + 587 G + 114 B) / 1000 rounded gives 28 and 155 for the first two.
        let img = Image(height: 1, width: 5, channels: 3, pixels: [2, 20, 133, 8, 235, 133, 255, 255, 255, 10, 200, 30, 1, 2, 3])
        XCTAssertEqual(img.converted(toChannels: 1).pixels, [27, 156, 255, 124, 2])
    }
}
