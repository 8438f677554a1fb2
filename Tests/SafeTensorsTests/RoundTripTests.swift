// Writing then reading gives the same bits; written files match the reference implementation's
// bytes (order, JSON, padding); writes are atomic.
import XCTest
import TestSupport
import LeffaTensor
@testable import SafeTensors

final class RoundTripTests: XCTestCase {
    /// Random values plus the ones conversions get wrong: ±0, ±inf, NaN payloads, subnormals,
    /// float16 and bfloat16 ties.
    func specialTensor() -> Tensor {
        let specials: [Float] = [0, -0.0, .infinity, -.infinity, Float(bitPattern: 0x7FC0_1234), Float(bitPattern: 0xFF80_0001),
                                 .leastNonzeroMagnitude, 0x1p-24, 0x1p-25, 3 * 0x1p-25, 65504, 65520, 1 + 0x1p-11,
                                 Float(bitPattern: 0x3F80_8000), .greatestFiniteMagnitude, -1e-30]
        let r = Tensor.randn([2, 3, 4, 5], seed: 1, scale: 3)
        for (i, v) in specials.enumerated() { r[i * 7] = v }
        return r
    }

    func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

    func testF32RoundTripIsBitExact() throws {
        let dir = try scratchDirectory(self), url = dir.appendingPathComponent("a.safetensors")
        let a = specialTensor(), b = Tensor.randn([7], seed: 2), s = Tensor([42], shape: [])
        try writeSafeTensors([("a", a), ("b.weight", b), ("scalar", s), ("empty", Tensor(zeros: [0, 3]))], to: url)
        let f = try SafeTensorsFile(url: url)
        XCTAssertEqual(bits(try f.tensor("a")), bits(a))
        XCTAssertEqual(bits(try f.tensor("b.weight", expectedShape: [7])), bits(b))
        XCTAssertEqual(try f.shape(of: "scalar"), [])
        XCTAssertEqual(try f.tensor("scalar").item, 42)
        XCTAssertEqual(try f.tensor("empty").shape, [0, 3])
        XCTAssertEqual(try f.dtype(of: "a"), .f32)
        XCTAssertEqual(f.names.sorted(), ["a", "b.weight", "empty", "scalar"])
        XCTAssertTrue(f.metadata.isEmpty)
    }

    func testF16AndBF16RoundTrip() throws {
        let dir = try scratchDirectory(self)
        let a = specialTensor()
        for (dtype, narrow, widen) in [(SafeTensorsDType.f16, floatToFloat16Bits, float16BitsToFloat),
                                       (.bf16, floatToBFloat16Bits, bfloat16BitsToFloat)] {
            let url = dir.appendingPathComponent("\(dtype.rawValue).safetensors")
            try writeSafeTensors(["a": a], to: url, dtype: dtype)
            let f = try SafeTensorsFile(url: url)
            XCTAssertEqual(try f.dtype(of: "a"), dtype)
            XCTAssertEqual(f.dataSize, 2 * a.count)
            let back = try f.tensor("a")
            XCTAssertEqual(bits(back), a.scalars.map { widen(narrow($0)).bitPattern }, dtype.rawValue)
            // Stored bits are the rounded ones.
            let stored = try f.withRawBytes("a") { Array($0.bindMemory(to: UInt16.self)) }
            XCTAssertEqual(stored, a.scalars.map(narrow))
            // A second trip changes nothing: narrowing a widened value is exact.
            let url2 = dir.appendingPathComponent("\(dtype.rawValue)-2.safetensors")
            try writeSafeTensors(["a": back], to: url2, dtype: dtype)
            XCTAssertEqual(try Data(contentsOf: url2), try Data(contentsOf: url))
        }
    }

    func testI64AndF64RoundTrip() throws {
        let dir = try scratchDirectory(self), url = dir.appendingPathComponent("i.safetensors")
        let values: [Int64] = [0, 1, -1, 999, .max, .min]
        var w = SafeTensorsWriter()
        w.add("t", int64s: values, shape: [2, 3])
        w.add("steps", int64s: [10, 900])
        w.add("d", Tensor([1.5, -0.1, 3e38], shape: [3]), as: .f64)
        try w.write(to: url)
        let f = try SafeTensorsFile(url: url)
        XCTAssertEqual(try f.int64s("t", expectedShape: [2, 3]), values)
        XCTAssertEqual(try f.int64s("steps"), [10, 900])
        XCTAssertEqual(try f.tensor("steps").scalars, [10, 900])
        XCTAssertEqual(try f.dtype(of: "t"), .i64)
        XCTAssertEqual(try f.tensor("d").scalars, [1.5, -0.1, 3e38])
        let doubles = try f.withRawBytes("d") { Array($0.bindMemory(to: Double.self)) }
        XCTAssertEqual(doubles, [1.5, Double(Float(-0.1)), Double(Float(3e38))])
    }

    func testLoadIntoAViewOfAFlatBlock() throws {
        let dir = try scratchDirectory(self), url = dir.appendingPathComponent("v.safetensors")
        let w = Tensor.randn([3, 4], seed: 3), b = Tensor.randn([3], seed: 4)
        try writeSafeTensors(["w": w, "b": b], to: url)
        let flat = Storage(count: 15)
        let pw = Tensor(shape: [3, 4], storage: Storage(viewOf: flat, offset: 0, count: 12))
        let pb = Tensor(shape: [3], storage: Storage(viewOf: flat, offset: 12, count: 3))
        let f = try SafeTensorsFile(url: url)
        try f.load("w", into: pw)
        try f.load("b", into: pb)
        XCTAssertEqual(Array(flat.buffer), w.scalars + b.scalars)
    }

    func testLayoutMatchesReference() throws {
        // Sorted by descending dtype then name, whatever the insertion order; metadata first;
        // header padded with spaces to a multiple of 8.
        func build(_ order: [Int]) throws -> [UInt8] {
            var w = SafeTensorsWriter(metadata: ["format": "pt", "a\"b": "x\ny"])
            let adds: [(inout SafeTensorsWriter) -> Void] = [
                { $0.add("z.f32", Tensor([1], shape: [1])) },
                { $0.add("a.f32", Tensor([2, 3], shape: [2])) },
                { $0.add("m.bf16", Tensor([1], shape: [1]), as: .bf16) },
                { $0.add("m.f16", Tensor([1], shape: [1]), as: .f16) },
                { $0.add("t", int64s: [5]) },
            ]
            for i in order { adds[i](&w) }
            return try w.serialized()
        }
        let bytes = try build([0, 1, 2, 3, 4])
        XCTAssertEqual(try build([4, 3, 2, 1, 0]), bytes)
        let n = Int(bytes[0..<8].reversed().reduce(0) { $0 << 8 | UInt64($1) })
        XCTAssertEqual(n % 8, 0)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        XCTAssertEqual(header.trimmingCharacters(in: .whitespaces), #"{"__metadata__":{"a\"b":"x\ny","format":"pt"},"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"a.f32":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"z.f32":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},"m.bf16":{"dtype":"BF16","shape":[1],"data_offsets":[20,22]},"m.f16":{"dtype":"F16","shape":[1],"data_offsets":[22,24]}}"#)
        let dir = try scratchDirectory(self), url = dir.appendingPathComponent("m.safetensors")
        try writeBytes(bytes, url)
        let f = try SafeTensorsFile(url: url)
        XCTAssertEqual(f.names, ["t", "a.f32", "z.f32", "m.bf16", "m.f16"])
        XCTAssertEqual(f.metadata, ["format": "pt", "a\"b": "x\ny"])
    }

    func testReferenceTestVectors() throws {
        // The byte strings of the reference implementation's own serialization tests.
        var w = SafeTensorsWriter()
        w.add("attn.0", Tensor([0, 1, 2, 3, 4, 5], shape: [1, 2, 3]))
        let header = #"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#
        XCTAssertEqual(try w.serialized(), [64, 0, 0, 0, 0, 0, 0, 0] + Array(header.utf8) + f32Bytes([0, 1, 2, 3, 4, 5]))
        var w2 = SafeTensorsWriter()
        w2.add("attn0", Tensor([0, 1, 2, 3, 4, 5], shape: [1, 1, 2, 3]))
        let header2 = #"{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}"# + "       "
        XCTAssertEqual(try w2.serialized(), [72, 0, 0, 0, 0, 0, 0, 0] + Array(header2.utf8) + f32Bytes([0, 1, 2, 3, 4, 5]))
        XCTAssertEqual(try SafeTensorsWriter().serialized(), [8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8))
        XCTAssertEqual(try SafeTensorsWriter(metadata: ["framework": "pt"]).serialized(),
                       [40, 0, 0, 0, 0, 0, 0, 0] + Array(#"{"__metadata__":{"framework":"pt"}}     "#.utf8))
    }

    func testAtomicReplaceLeavesNoTemporaryAndKeepsOldMappings() throws {
        let dir = try scratchDirectory(self), url = dir.appendingPathComponent("ckpt.safetensors")
        try writeSafeTensors(["w": Tensor([1, 2, 3], shape: [3])], to: url)
        let old = try SafeTensorsFile(url: url)
        try writeSafeTensors(["w": Tensor([7, 8], shape: [2])], to: url)
        XCTAssertEqual(try old.tensor("w").scalars, [1, 2, 3])          // the old inode is still mapped
        XCTAssertEqual(try SafeTensorsFile(url: url).tensor("w").scalars, [7, 8])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["ckpt.safetensors"])
        // A failed write leaves nothing behind and names the file.
        let bad = dir.appendingPathComponent("no-such-dir/x.safetensors")
        assertThrows(["no-such-dir/x.safetensors", "cannot create"]) { try writeSafeTensors(["w": Tensor([1], shape: [1])], to: bad) }
        var w = SafeTensorsWriter()
        w.add("w", Tensor([1], shape: [1]))
        w.add("w", Tensor([2], shape: [1]))
        assertThrows([url.path, "'w'", "twice"]) { try w.write(to: url) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["ckpt.safetensors"])
        XCTAssertEqual(try SafeTensorsFile(url: url).tensor("w").scalars, [7, 8])
    }
}
