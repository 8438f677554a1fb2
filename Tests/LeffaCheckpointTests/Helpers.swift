// Shared by the checkpoint tests: scratch directories, a small model-like checkpoint, byte-level
// file surgery (truncate, flip bytes) and an assertion on error messages.
import Foundation
import XCTest
import TestSupport
import LeffaTensor
@testable import LeffaCheckpoint

/// A tensor of arbitrary float32 bit patterns (NaN payloads, subnormals, ±0, ±inf included):
/// only a bit-exact path keeps them all.
func randomBits(_ shape: [Int], seed: UInt64) -> Tensor {
    let t = Tensor(zeros: shape)
    for i in 0 ..< t.count { t[i] = Float(bitPattern: UInt32(truncatingIfNeeded: CounterRNG.bits(seed, UInt64(i)))) }
    return t
}

func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

/// A few parameters named like the UNets' (dots kept verbatim), in one flat block.
struct TinyModel {
    static let layout: [FlatEntry] = {
        let shapes: [(String, [Int])] = [
            ("unet.conv_in.weight", [8, 12, 3, 3]),
            ("unet.conv_in.bias", [8]),
            ("unet.down_blocks.0.resnets.0.conv1.weight", [8, 8, 3, 3]),
            ("unet.down_blocks.0.resnets.0.norm1.weight", [8]),
            ("unet.time_embedding.linear_1.weight", [32, 8]),
            ("unet_encoder.conv_in.weight", [8, 4, 3, 3]),
            ("unet_encoder.mid_block.attentions.0.proj_in.weight", [8, 8]),
        ]
        var off = 0
        return shapes.map { name, shape in
            defer { off += shape.reduce(1, *) }
            return FlatEntry(name: name, offset: off, shape: shape)
        }
    }()
    static var count: Int { layout.reduce(0) { $0 + $1.count } }

    /// A flat block of `count` floats whose values depend on `seed`.
    static func block(seed: UInt64) -> Tensor { randomBits([count], seed: seed) }
}

/// Meta values like a training checkpoint's, awkward cases included.
func sampleMeta(step: Int64) -> [String: CheckpointValue] {
    [
        "step": .int64(step),
        "stage": .string("highres"),
        "stage_index": .int64(1),
        "data_position": .int64(123_456_789_012),
        "seed": .int64(-7),
        "config": .string("""
            # Leffa — try-on, stage 2 ✓
            stages:
              - name: lowres   # 512×384
                lr: 1.0e-5
              - name: highres
            note: "日本語とemoji 🧥👗, tabs\tand CRLF\r\nend"
            """),
        "run_id": .string("run-2024-06-01T12:00:00Z"),
        "rng_keys": .uint64s([0, 1, .max, 0x9E37_79B9_7F4A_7C15]),
        "lr": .float64(1e-5),
        "loss_ema": .float64(Double(bitPattern: 0x7FF8_0000_0000_1234)),   // NaN with a payload
        "minus_zero": .float64(-0.0),
        "int_extremes": .int64s([.min, -1, 0, 1, .max]),
        "empty_ints": .int64s([]),
        "empty_string": .string(""),
    ]
}

/// A checkpoint with params, Adam moments and EMA of `TinyModel`, plus a scalar and an empty tensor.
func sampleContents(step: Int64, seed: UInt64 = 1) throws -> (CheckpointContents, [String: Tensor]) {
    var c = CheckpointContents(meta: sampleMeta(step: step))
    var flats: [String: Tensor] = [:]
    for (k, g) in ["params", "optimizer/m", "optimizer/v", "ema"].enumerated() {
        let flat = TinyModel.block(seed: seed &* 100 &+ UInt64(k))
        try c.setGroup(g, flat: flat, layout: TinyModel.layout)
        flats[g] = flat
    }
    c.setGroup("extra", [("scalar", Tensor([42], shape: [])), ("empty", Tensor(zeros: [0, 3])), ("v", Tensor([1, 2, 3], shape: [3]))])
    return (c, flats)
}

/// The call must throw a CheckpointError whose message contains every one of `fragments`;
/// returns it for further checks.
@discardableResult
func assertCheckpointError<T>(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                              _ body: () throws -> T) -> CheckpointError? {
    do {
        _ = try body()
        XCTFail("expected an error mentioning \(fragments)", file: file, line: line)
    } catch let e as CheckpointError {
        for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' does not mention '\(f)'", file: file, line: line) }
        XCTAssertEqual(e.errorDescription, e.description, file: file, line: line)
        return e
    } catch { XCTFail("not a CheckpointError: \(error)", file: file, line: line) }
    return nil
}

// MARK: - File surgery

func fileBytes(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }

/// The checked leffa header of a checkpoint file.
func readHeader(_ url: URL) throws -> CheckpointHeader {
    let fd = openReadOnly(url.path)
    defer { closeFD(fd) }
    return try CheckpointHeader.read(fd, size: try fileSize(url), path: url.path)
}

func fileSize(_ url: URL) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! NSNumber).intValue
}

/// Cuts the file to `size` bytes, like a copy or a write interrupted half-way.
func truncate(_ url: URL, to size: Int) throws {
    let h = try FileHandle(forWritingTo: url)
    try h.truncate(atOffset: UInt64(size))
    try h.close()
}

/// XORs the bytes at `offset` with 0xFF, in place.
func flipBytes(_ url: URL, at offset: Int, count: Int = 4) throws {
    let h = try FileHandle(forUpdating: url)
    try h.seek(toOffset: UInt64(offset))
    let old = try h.read(upToCount: count) ?? Data()
    try h.seek(toOffset: UInt64(offset))
    try h.write(contentsOf: Data(old.map { $0 ^ 0xFF }))
    try h.close()
}

/// Offset of the first occurrence of `needle` in the file (nil if absent).
func offset(of needle: [UInt8], in url: URL) throws -> Int? {
    let hay = try fileBytes(url)
    guard needle.count <= hay.count else { return nil }
    outer: for i in 0 ... hay.count - needle.count {
        for j in 0 ..< needle.count where hay[i + j] != needle[j] { continue outer }
        return i
    }
    return nil
}

/// The in-file bytes of a float32 tensor's first `n` values.
func leadingBytes(_ t: Tensor, _ n: Int = 8) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: t.data, count: 4 * min(n, t.count)))
}
