// Writing then reading gives the same bits, names and meta values; the flat-block path reads
// into the trainer's block and reports every name or shape that does not match; bad input to
// the writer is refused before anything is written.
import XCTest
import TestSupport
import LeffaTensor
@testable import LeffaCheckpoint

final class RoundTripTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try scratchDirectory(self) }

    func testXXHash64MatchesPublishedValues() {
        // Values from the reference implementation (Python: xxhash.xxh64(data).intdigest()).
        XCTAssertEqual(XXHash64.hash([]), 0xEF46_DB37_51D8_E999)
        XCTAssertEqual(XXHash64.hash(Array("a".utf8)), 0xD24E_C4F1_A98C_6E5B)
        XCTAssertEqual(XXHash64.hash(Array("abc".utf8)), 0x44BC_2CF5_AD77_0999)
        let ramp = [UInt8]((0 ..< 768).map { UInt8($0 % 256) })
        XCTAssertEqual(XXHash64.hash(ramp), 0x8E03_C838_C596_036F)
        XCTAssertEqual(XXHash64.hash([UInt8](repeating: UInt8(ascii: "x"), count: 31)), 0x60DD_0D01_083B_99F0)
        XCTAssertEqual(XXHash64.hash([UInt8](repeating: UInt8(ascii: "y"), count: 33)), 0xF27D_5A84_556C_AEF4)
        // Streaming in uneven pieces gives the one-shot value.
        for cut in [[1], [31, 1], [5, 40, 100], [32, 32], [767]] {
            var h = XXHash64()
            var start = 0
            ramp.withUnsafeBytes { all in
                for c in cut { h.update(UnsafeRawBufferPointer(rebasing: all[start ..< start + c])); start += c }
                h.update(UnsafeRawBufferPointer(rebasing: all[start...]))
            }
            XCTAssertEqual(h.digest(), 0x8E03_C838_C596_036F, "pieces \(cut)")
        }
    }

    func testRoundTripIsBitExact() throws {
        let (c, flats) = try sampleContents(step: 1234)
        let url = dir.appendingPathComponent("a.h5")
        try CheckpointWriter.write(c, to: url)
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path + ".tmp"))

        let r = try CheckpointReader(url: url)
        XCTAssertEqual(r.formatVersion, CheckpointFormat.version)
        XCTAssertEqual(r.groupPaths, ["ema", "extra", "optimizer/m", "optimizer/v", "params"])
        XCTAssertEqual(r.meta, sampleMeta(step: 1234))
        XCTAssertEqual(try r.int64("step"), 1234)
        XCTAssertEqual(try r.string("config"), try c.string("config"))
        XCTAssertEqual(try r.uint64s("rng_keys"), [0, 1, .max, 0x9E37_79B9_7F4A_7C15])
        XCTAssertEqual(try r.float64("minus_zero").sign, .minus)

        let back = try r.readAll()
        XCTAssertTrue(r.fullyVerified)
        XCTAssertEqual(back.meta, c.meta)
        XCTAssertEqual(back.groupPaths, c.groupPaths)
        for g in c.groupPaths {
            let want = try c.group(g), got = try back.group(g)
            XCTAssertEqual(Set(got.map(\.name)), Set(want.map(\.name)), g)
            for (name, t) in want {
                let u = try back.tensor(name, in: g)
                XCTAssertEqual(u.shape, t.shape, "\(g)/\(name)")
                XCTAssertEqual(bits(u), bits(t), "\(g)/\(name)")
            }
        }
        XCTAssertEqual(try back.tensor("scalar", in: "extra").shape, [])
        XCTAssertEqual(try back.tensor("scalar", in: "/extra/").item, 42)
        XCTAssertEqual(try back.tensor("empty", in: "extra").shape, [0, 3])
        XCTAssertEqual(try r.names(in: "params"), TinyModel.layout.map(\.name).sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }))
        XCTAssertEqual(try r.shape(of: "unet.conv_in.weight", in: "params"), [8, 12, 3, 3])
        _ = flats
    }

    func testLargeConfigTextAndManyTensors() throws {
        // A config far beyond HDF5's 64 KiB compact-attribute limit, and a group of many datasets.
        let config = String(repeating: "line: \"ü 🧥\"\n", count: 20_000)
        var c = CheckpointContents(meta: ["config": .string(config)])
        c.setGroup("params", (0 ..< 600).map { ("layer.\($0).weight", Tensor([Float($0)], shape: [1])) })
        let url = dir.appendingPathComponent("big.h5")
        try CheckpointWriter.write(c, to: url)
        let r = try CheckpointReader(url: url)
        XCTAssertEqual(try r.string("config"), config)
        XCTAssertEqual(try r.names(in: "params").count, 600)
        XCTAssertEqual(try r.read("layer.599.weight", in: "params").item, 599)
    }

    func testFlatBlockWriteAndReadWithoutCopies() throws {
        let flat = TinyModel.block(seed: 9)
        var c = CheckpointContents(meta: ["step": .int64(1)])
        try c.setGroup("params", flat: flat, layout: TinyModel.layout)
        // The group's tensors are views into the block, not copies.
        for (e, (name, t)) in zip(TinyModel.layout, try c.group("params")) {
            XCTAssertEqual(name, e.name)
            XCTAssertEqual(t.data, flat.data + e.offset)
        }
        let url = dir.appendingPathComponent("flat.h5")
        try CheckpointWriter.write(c, to: url)

        let r = try CheckpointReader(url: url)
        let into = Tensor(repeating: 7, shape: [TinyModel.count])
        try r.readGroup("params", into: into, layout: TinyModel.layout)
        XCTAssertEqual(bits(into), bits(flat))
        // Another layout order over another block: placement follows the layout, not the file.
        let reversed = TinyModel.layout.reversed().reduce(into: (0, [FlatEntry]())) { acc, e in
            acc.1.append(FlatEntry(name: e.name, offset: acc.0, shape: e.shape)); acc.0 += e.count
        }.1
        let other = Tensor(zeros: [TinyModel.count + 5])
        try r.readGroup("params", into: other, layout: reversed)
        for e in reversed {
            let src = TinyModel.layout.first { $0.name == e.name }!
            XCTAssertEqual(Array(UnsafeBufferPointer(start: other.data + e.offset, count: e.count)).map(\.bitPattern),
                           Array(UnsafeBufferPointer(start: flat.data + src.offset, count: e.count)).map(\.bitPattern), e.name)
        }
    }

    func testLayoutMismatchNamesEverythingThatDiffers() throws {
        var c = CheckpointContents()
        try c.setGroup("params", flat: TinyModel.block(seed: 3), layout: TinyModel.layout)
        let url = dir.appendingPathComponent("m.h5")
        try CheckpointWriter.write(c, to: url)
        let r = try CheckpointReader(url: url)

        var layout = TinyModel.layout
        layout.removeLast()                                               // in the file, not in the model
        layout[1].shape = [4, 2]                                          // conv_in.bias: [8] in the file
        layout.append(FlatEntry(name: "unet.new_layer.weight", offset: TinyModel.count, shape: [2]))
        let block = Tensor(repeating: 5, shape: [TinyModel.count + 2])
        let e = assertCheckpointError([url.path, "'/params'", "1 missing ('unet.new_layer.weight')",
                                       "1 unexpected ('unet_encoder.mid_block.attentions.0.proj_in.weight')",
                                       "'unet.conv_in.bias' is [8], expected [4, 2]", "another model or config"]) {
            try r.readGroup("params", into: block, layout: layout)
        }
        XCTAssertEqual(e?.isDamage, false)
        XCTAssertTrue(block.scalars.allSatisfy { $0 == 5 }, "nothing is read when the layout does not match")

        assertCheckpointError([url.path, "no group '/ema'", "'/params'"]) { try r.readGroup("ema", into: block, layout: layout) }
        assertCheckpointError([url.path, "no dataset 'nope'", "'/params'"]) { try r.read("nope", in: "params") }
        assertCheckpointError([url.path, "does not fit the flat block"]) {
            try r.readGroup("params", into: Tensor(zeros: [3]), layout: TinyModel.layout)
        }
        // Meta access names the key and what it holds.
        assertCheckpointError([url.path, "no meta attribute 'step'"]) { try r.int64("step") }
        var c2 = CheckpointContents(meta: ["step": .string("ten")])
        c2.setGroup("params", [("w", Tensor([1], shape: [1]))])
        let url2 = dir.appendingPathComponent("m2.h5")
        try CheckpointWriter.write(c2, to: url2)
        assertCheckpointError([url2.path, "'step' is string \"ten\", expected int64"]) { try CheckpointReader(url: url2).int64("step") }
    }

    func testWriterRefusesBadContentsAndNeverOverwrites() throws {
        let url = dir.appendingPathComponent("bad.h5")
        let t = Tensor([1], shape: [1])
        let cases: [(CheckpointContents, [String])] = [
            ({ var c = CheckpointContents(); c.setGroup("params", [("a/b", t)]); return c }(), ["'/params/a/b'", "'/'"]),
            ({ var c = CheckpointContents(); c.setGroup("params", [("w", t), ("w", t)]); return c }(), ["'/params/w'", "twice"]),
            ({ var c = CheckpointContents(); c.setGroup("meta", [("w", t)]); return c }(), ["'/meta'", "reserved"]),
            ({ var c = CheckpointContents(); c.setGroup("a//b", [("w", t)]); return c }(), ["'/a//b'", "empty component"]),
            ({ var c = CheckpointContents(); c.setGroup("", [("w", t)]); return c }(), ["empty group path"]),
            ({ var c = CheckpointContents(); c.setGroup("opt", [("m", t)]); c.setGroup("opt/m", [("w", t)]); return c }(),
             ["'/opt/m' is a dataset"]),
            (CheckpointContents(meta: ["config": .string("a\u{0}b")]), ["meta 'config'", "NUL"]),
        ]
        for (c, fragments) in cases {
            assertCheckpointError([url.path] + fragments) { try CheckpointWriter.write(c, to: url) }
            XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
            XCTAssertFalse(FileManager.default.fileExists(atPath: url.path + ".tmp"))
        }
        var flatContents = CheckpointContents()
        assertCheckpointError(["'/params/unet.conv_in.weight'", "does not fit the flat block of 10 floats"]) {
            try flatContents.setGroup("params", flat: Tensor(zeros: [10]), layout: TinyModel.layout)
        }

        // An existing checkpoint is never replaced.
        let (good, _) = try sampleContents(step: 1)
        try CheckpointWriter.write(good, to: url)
        let before = try fileBytes(url)
        let (other, _) = try sampleContents(step: 2, seed: 2)
        assertCheckpointError([url.path, "already exists"]) { try CheckpointWriter.write(other, to: url) }
        XCTAssertEqual(try fileBytes(url), before)
        XCTAssertEqual(try CheckpointReader(url: url).int64("step"), 1)
    }

    func testH5DumpReadsTheFile() throws {
        let (c, _) = try sampleContents(step: 77)
        let url = dir.appendingPathComponent("dump.h5")
        try CheckpointWriter.write(c, to: url)
        guard let h5dump = ["/usr/bin/h5dump", "/usr/local/bin/h5dump", "/opt/homebrew/bin/h5dump"]
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("h5dump is not installed (apt install hdf5-tools)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: h5dump)
        p.arguments = ["-H", "-A", url.path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = Pipe()
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
        for s in ["GROUP \"params\"", "GROUP \"optimizer\"", "GROUP \"m\"", "GROUP \"v\"", "GROUP \"ema\"", "GROUP \"meta\"",
                  "DATASET \"unet.down_blocks.0.resnets.0.conv1.weight\"", "H5T_IEEE_F32LE", "( 8, 8, 3, 3 )",
                  "ATTRIBUTE \"step\"", "ATTRIBUTE \"config\"", "ATTRIBUTE \"leffa_format\"", "ATTRIBUTE \"checksum_xxh64\"",
                  "ATTRIBUTE \"xxh64\""] {
            XCTAssertTrue(text.contains(s), "h5dump output lacks \(s)")
        }
    }
}
