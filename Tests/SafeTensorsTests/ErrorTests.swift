// Every way a file or a request can be wrong: the error is thrown (never a crash) and its message
// names the file, the key and what was expected.
import XCTest
import TestSupport
import LeffaTensor
@testable import SafeTensors

final class ErrorTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try scratchDirectory(self) }

    /// Writes `bytes` to a fresh file and returns its URL.
    func file(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try writeBytes(bytes, url)
        return url
    }

    func entry(_ key: String, _ dtype: String = "F32", _ shape: String = "[2]", _ offsets: String = "[0,8]") -> String {
        #""\#(key)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":\#(offsets)}"#
    }

    func testFileLevelErrors() throws {
        assertOpenFails(dir.appendingPathComponent("absent.safetensors"), ["absent.safetensors", "cannot open"])
        assertOpenFails(dir, [dir.path, "not a regular file"])
        let empty = try file("empty.safetensors", [])
        assertOpenFails(empty, [empty.path, "0 bytes", "at least 8"])
        let short = try file("short.safetensors", [1, 2, 3, 4, 5])
        assertOpenFails(short, [short.path, "5 bytes"])
        // Header length beyond the file: a download cut inside the header.
        let whole = rawFile(header: "{" + entry("w") + "}", data: f32Bytes([1, 2]))
        let cut = try file("cut.safetensors", Array(whole.prefix(30)))
        assertOpenFails(cut, [cut.path, "header length 56", "file has 30", "truncated"])
        let huge = try file("huge.safetensors", rawFile(header: "{}", length: 1 << 40))
        assertOpenFails(huge, [huge.path, "exceeds"])
    }

    func testInvalidJSON() throws {
        let a = try file("a.safetensors", rawFile(header: #"{"w":"#))
        assertOpenFails(a, [a.path, "not a valid JSON object"])
        let b = try file("b.safetensors", rawFile(header: "[1, 2]"))
        assertOpenFails(b, [b.path, "top level is an array, expected an object"])
        let c = try file("c.safetensors", [8, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D, 0x20])
        assertOpenFails(c, [c.path, "not a valid JSON object"])
    }

    func testMalformedEntries() throws {
        let cases: [(String, [String])] = [
            (entry("w", "F128"), ["'w'", "unknown dtype 'F128'", "F32"]),
            (entry("w", "F32", "[-2]"), ["'w'", "\"shape\" contains -2", "non-negative integers"]),
            (entry("w", "F32", "[true]"), ["'w'", "a boolean"]),
            (entry("w", "F32", "[1.5]"), ["'w'", "\"shape\""]),
            (entry("w", "F32", "[2]", "[0,8,9]"), ["'w'", "3 numbers, expected 2"]),
            (entry("w", "F32", "{}", "[0,8]"), ["'w'", "\"shape\" is an object"]),
            (#""w":{"shape":[2],"data_offsets":[0,8]}"#, ["'w'", "no \"dtype\""]),
            (#""w":{"dtype":7,"shape":[2],"data_offsets":[0,8]}"#, ["'w'", "\"dtype\" is a number"]),
            (#""w":{"dtype":"F32","data_offsets":[0,8]}"#, ["'w'", "no \"shape\""]),
            (#""w":[1]"#, ["'w'", "is an array, expected an object"]),
            (entry("w") + #","__metadata__":{"step":3}"#, ["'__metadata__'", "value of 'step' is a number, expected a string"]),
            (entry("w", "F32", "[4294967296,4294967296,4294967296]"), ["'w'", "more elements"]),
        ]
        for (i, (body, fragments)) in cases.enumerated() {
            let url = try file("m\(i).safetensors", rawFile(header: "{" + body + "}", data: f32Bytes([1, 2])))
            assertOpenFails(url, [url.path] + fragments)
        }
    }

    func testOffsetsAndLayout() throws {
        let data = f32Bytes([1, 2, 3, 4])
        let cases: [(String, [String])] = [
            (entry("w", "F32", "[5]", "[0,20]"), ["'w'", "data_offsets [0, 20] outside the data section of 16 bytes"]),
            (entry("w", "F32", "[2]", "[12,4]"), ["'w'", "[12, 4]"]),
            (entry("w", "F32", "[2,2]", "[0,12]") + "," + entry("x", "F32", "[1]", "[12,16]"),
             ["'w'", "span 12 bytes but shape [2, 2] of F32 needs 16"]),
            (entry("w", "I64", "[1]", "[0,4]") + "," + entry("x", "F32", "[3]", "[4,16]"), ["'w'", "I64 needs 8"]),
            (entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[4,12]") + "," + entry("c", "F32", "[1]", "[12,16]"),
             ["'b'", "overlap tensor 'a'"]),
            (entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[1]", "[12,16]"), ["'b'", "gap of 4 bytes after tensor 'a'"]),
            (entry("a", "F32", "[3]", "[0,12]"), ["'a'", "4 trailing"]),
            ("", ["(no tensors)", "16 trailing"]),
        ]
        for (i, (body, fragments)) in cases.enumerated() {
            let url = try file("o\(i).safetensors", rawFile(header: "{" + body + "}", data: data))
            assertOpenFails(url, [url.path] + fragments)
        }
        // A file cut inside its data: the last tensor now reaches past the end.
        var w = SafeTensorsWriter()
        w.add("first", Tensor.randn([4], seed: 1))
        w.add("second", Tensor.randn([4], seed: 2))
        let url = try file("truncated.safetensors", Array(try w.serialized().dropLast(4)))
        assertOpenFails(url, [url.path, "'second'", "outside the data section", "truncated"])
    }

    func testRequestErrors() throws {
        let url = dir.appendingPathComponent("ok.safetensors")
        try writeSafeTensors(["unet.conv_in.weight": Tensor(zeros: [4, 2, 3, 3]), "unet.conv_in.bias": Tensor(zeros: [4])],
                             to: url, int64s: [("t", [1, 2], [2])])
        let f = try SafeTensorsFile(url: url)
        assertThrows([url.path, "'unet.conv_in.weight'", "shape [4, 2, 3, 3], expected [4, 12, 3, 3]"]) {
            try f.tensor("unet.conv_in.weight", expectedShape: [4, 12, 3, 3])
        }
        assertThrows([url.path, "'unet.conv_in.bias'", "shape [4], expected [8]"]) { try f.load("unet.conv_in.bias", into: Tensor(zeros: [8])) }
        assertThrows([url.path, "'t'", "shape [2], expected [3]"]) { try f.int64s("t", expectedShape: [3]) }
        assertThrows([url.path, "'conv_in.weight' not found", "similar keys: 'unet.conv_in.weight'"]) { try f.tensor("conv_in.weight") }
        assertThrows([url.path, "'nothing' not found"]) { try f.shape(of: "nothing") }
        assertThrows([url.path, "'unet.conv_in.bias'", "dtype F32 cannot be read as Int64"]) { try f.int64s("unet.conv_in.bias") }
    }

    func testKeySetCheck() throws {
        let url = dir.appendingPathComponent("keys.safetensors")
        var tensors: [String: Tensor] = [:]
        for i in 0..<9 { tensors["extra.\(i)"] = Tensor(zeros: [1]) }
        tensors["shared"] = Tensor(zeros: [1])
        try writeSafeTensors(tensors, to: url)
        let f = try SafeTensorsFile(url: url)
        let expected = ["shared", "want.a", "want.b"]
        let diff = f.keyDifference(expected: expected)
        XCTAssertEqual(diff.missing, ["want.a", "want.b"])
        XCTAssertEqual(diff.unexpected.count, 9)
        assertThrows([url.path, "2 missing ('want.a', 'want.b')", "9 unexpected ('extra.0', 'extra.1', 'extra.2', 'extra.3', 'extra.4', … 4 more)"]) {
            try f.checkKeys(expected: expected)
        }
        assertThrows(["2 missing"]) { try f.checkKeys(expected: expected, allowUnexpected: true) }
        XCTAssertNoThrow(try f.checkKeys(expected: tensors.keys))
        XCTAssertNoThrow(try f.checkKeys(expected: ["shared"], allowUnexpected: true))
    }

    func testWriterErrors() throws {
        let url = dir.appendingPathComponent("w.safetensors")
        var a = SafeTensorsWriter()
        a.add("__metadata__", Tensor(zeros: [1]))
        assertThrows([url.path, "'__metadata__'", "reserved"]) { try a.write(to: url) }
        var b = SafeTensorsWriter()
        b.add("x", Tensor(zeros: [1]), as: .i64)
        assertThrows([url.path, "'x'", "F32, F16, BF16 or F64, not I64"]) { try b.write(to: url) }
        var c = SafeTensorsWriter()
        c.add("t", int64s: [1, 2, 3], shape: [2])
        assertThrows([url.path, "'t'", "3 values do not fill shape [2]"]) { try c.write(to: url) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
    }

    /// Random damage to a valid file: opening either fails with a SafeTensorsError or succeeds,
    /// and then every tensor reads. Never a trap.
    func testDamagedFilesNeverCrash() throws {
        var w = SafeTensorsWriter(metadata: ["k": "v"])
        w.add("a.weight", Tensor.randn([3, 4], seed: 1))
        w.add("b", Tensor.randn([5], seed: 2), as: .f16)
        w.add("t", int64s: [3, 4])
        let good = try w.serialized()
        var opened = 0, refused = 0
        for trial in 0..<600 {
            // A new name each time: rewriting one file makes ext4 flush it on every close.
            let url = dir.appendingPathComponent("fuzz\(trial).safetensors")
            defer { unlink(url.path) }
            var bytes = good
            let r = CounterRNG.bits(99, UInt64(trial))
            switch trial % 3 {
            case 0: bytes = Array(bytes.prefix(Int(r % UInt64(bytes.count))))                 // truncate
            case 1:                                                                           // flip a header byte
                let i = Int(r % UInt64(min(bytes.count, 8 + 200)))
                bytes[i] = UInt8(truncatingIfNeeded: r >> 32)
            default:                                                                          // replace a header digit
                let digits = bytes.indices.filter { $0 >= 8 && $0 < 208 && (48...57).contains(bytes[$0]) }
                bytes[digits[Int(r % UInt64(digits.count))]] = UInt8(48 + (r >> 40) % 10)
            }
            try writeBytes(bytes, url)
            do {
                let f = try SafeTensorsFile(url: url)
                for n in f.names {
                    _ = try f.tensor(n)
                    if try f.dtype(of: n).isInteger { _ = try f.int64s(n) }
                }
                opened += 1
            } catch is SafeTensorsError { refused += 1 }
        }
        XCTAssertGreaterThan(refused, 300)
        XCTAssertGreaterThan(opened, 10)
    }
}
