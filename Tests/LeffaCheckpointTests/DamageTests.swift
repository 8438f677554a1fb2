// Damage anywhere in a file is an error that names the file and what is wrong, never a crash and
// never a silently different checkpoint: every byte is covered by one of the three checksums
// (leffa header, HDF5 metadata, dataset data). HDF5 alone would crash on some of these files.
import XCTest
import TestSupport
import LeffaTensor
@testable import LeffaCheckpoint

final class DamageTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try scratchDirectory(self) }

    /// Reads all of `url`; nil when that succeeds, else the error (which must be a damage error).
    func damage(_ url: URL, file: StaticString = #filePath, line: UInt = #line) -> CheckpointError? {
        do {
            let r = try CheckpointReader(url: url)
            _ = try r.readAll()
            return nil
        } catch let e as CheckpointError {
            XCTAssertTrue(e.isDamage, "\(e)", file: file, line: line)
            XCTAssertTrue(e.description.contains(url.path), "\(e)", file: file, line: line)
            return e
        } catch {
            XCTFail("not a CheckpointError: \(error)", file: file, line: line)
            return nil
        }
    }

    func testEveryFlippedByteIsDetected() throws {
        let url = dir.appendingPathComponent("f.h5")
        try CheckpointWriter.write(try sampleContents(step: 5).0, to: url)
        let original = try fileBytes(url)
        // Every byte of the header, then a stride through metadata and data alike. (Position
        // 2079 of an earlier layout, a string length in HDF5's global heap, crashed libhdf5.)
        let positions = Array(0 ..< 80) + Array(stride(from: 80, to: original.count, by: 151))
        var seen = Set<String>()
        for pos in positions {
            var b = original
            b[pos] ^= 0x5A
            try Data(b).write(to: url)
            guard let e = damage(url) else { XCTFail("flipping byte \(pos) went unnoticed"); continue }
            seen.insert(String(e.reason.prefix(while: { $0 != ":" && $0 != "(" })))
        }
        // All three kinds of check were exercised.
        XCTAssertTrue(seen.contains { $0.hasPrefix("leffa header") }, "\(seen)")
        XCTAssertTrue(seen.contains { $0.hasPrefix("HDF5 metadata") }, "\(seen)")
        XCTAssertTrue(seen.contains { $0.hasPrefix("dataset '/params/") }, "\(seen)")
        try Data(original).write(to: url)
        XCTAssertNil(damage(url))
    }

    func testEveryTruncationIsDetected() throws {
        let url = dir.appendingPathComponent("t.h5")
        try CheckpointWriter.write(try sampleContents(step: 5).0, to: url)
        let original = try fileBytes(url)
        for size in [1, 15, 16, 40, 71, 72, 511, 600, 1024, 4096, original.count / 2, original.count - 4, original.count - 1] {
            try Data(original.prefix(size)).write(to: url)
            let e = damage(url)
            XCTAssertNotNil(e, "cut to \(size) bytes went unnoticed")
            if size >= 72 { XCTAssertEqual(e?.damageKind, "truncated", "\(String(describing: e))") }
        }
        // Bytes appended after the end are damage too.
        try Data(original + [0, 1, 2]).write(to: url)
        XCTAssertTrue(damage(url)?.reason.contains("3 more than") ?? false)
    }

    func testHeaderStatesTheDataExtentsExactly() throws {
        // The extents recorded in the header hold the tensors' bytes (H5Dget_offset is absolute).
        let (c, flats) = try sampleContents(step: 5)
        let url = dir.appendingPathComponent("x.h5")
        try CheckpointWriter.write(c, to: url)
        let h = try readHeader(url)
        XCTAssertEqual(h.extents.count, 4 * TinyModel.layout.count + 2)   // + extra/scalar, extra/v; extra/empty has none
        XCTAssertEqual(h.version, CheckpointFormat.version)
        let bytes = try fileBytes(url)
        let params = flats["params"]!
        let first = Array(UnsafeRawBufferPointer(start: params.data, count: 4 * TinyModel.layout[0].count))
        XCTAssertTrue(h.extents.contains { Array(bytes[$0.offset ..< $0.offset + $0.length]) == first })
    }
}

/// The dataset index in the header: what a reader uses instead of HDF5's object headers.
final class DatasetIndexTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try scratchDirectory(self) }

    func assertSameContents(_ back: CheckpointContents, _ c: CheckpointContents, line: UInt = #line) throws {
        XCTAssertEqual(back.meta, c.meta, line: line)
        XCTAssertEqual(back.groupPaths, c.groupPaths, line: line)
        for g in c.groupPaths {
            for (name, t) in try c.group(g) {
                let u = try back.tensor(name, in: g)
                XCTAssertEqual(u.shape, t.shape, "\(g)/\(name)", line: line)
                XCTAssertEqual(bits(u), bits(t), "\(g)/\(name)", line: line)
            }
        }
    }

    func testTheIndexNamesEveryDatasetWithItsDataExtent() throws {
        let (c, _) = try sampleContents(step: 5)
        let url = dir.appendingPathComponent("i.h5")
        try CheckpointWriter.write(c, to: url)
        let index = try XCTUnwrap(try readHeader(url).index)
        XCTAssertEqual(index.groups, c.groupPaths)
        let bytes = try fileBytes(url)
        for g in c.groupPaths {
            XCTAssertEqual(index.datasets[g]!.map(\.name), c.groups[g]!.map(\.name).sorted(by: utf8Less), g)
            for (name, t) in c.groups[g]! {
                let d = try XCTUnwrap(index.datasets[g]!.first { $0.name == name })
                XCTAssertEqual(d.shape, t.shape)
                let stored = Array(bytes[d.offset ..< d.offset + d.byteCount])
                XCTAssertEqual(stored, Array(UnsafeRawBufferPointer(start: t.data, count: 4 * t.count)), "/\(g)/\(name)")
            }
        }
        let r = try CheckpointReader(url: url)
        XCTAssertTrue(r.readsDirectly)
        try assertSameContents(try r.readAll(), c)
    }

    /// A file written before the index existed reads through HDF5, with the same values.
    func testAFileWithoutTheIndexReadsThroughHDF5() throws {
        let (c, flats) = try sampleContents(step: 7)
        let url = dir.appendingPathComponent("old.h5")
        try CheckpointWriter.write(c, to: url, version: CheckpointFormat.version, index: false)
        let r = try CheckpointReader(url: url)
        XCTAssertFalse(r.readsDirectly)
        try assertSameContents(try r.readAll(), c)
        let flat = Tensor(zeros: [flats["params"]!.count])
        try r.readGroup("params", into: flat, layout: TinyModel.layout)
        XCTAssertEqual(bits(flat), bits(flats["params"]!))
        try r.verifyUnread()
        XCTAssertTrue(r.fullyVerified)
    }

    /// An index that disagrees with HDF5's datasets (here: one digest changed, the header's own
    /// checksum made right again) is caught by the manifest checksum, which HDF5 carries.
    func testAnIndexThatDisagreesWithHDF5IsDamage() throws {
        let url = dir.appendingPathComponent("lie.h5")
        try CheckpointWriter.write(try sampleContents(step: 5).0, to: url)
        let fd = open(url.path, O_RDWR)
        defer { closeFD(fd) }
        var h = try readHeader(url)
        h.index!.datasets["params"]![0].digest ^= 1
        let bytes = h.encoded()
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }, bytes.count)
        XCTAssertThrowsError(try CheckpointReader(url: url)) { e in
            let e = e as! CheckpointError
            XCTAssertTrue(e.isDamage, "\(e)")
            XCTAssertTrue(e.description.contains("manifest"), "\(e)")
        }
        // An index whose offsets miss the data extents is refused before any read.
        h.index!.datasets["params"]![0].digest ^= 1
        h.index!.datasets["params"]![0].offset += 4
        let moved = h.encoded()
        XCTAssertEqual(moved.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }, moved.count)
        XCTAssertThrowsError(try CheckpointReader(url: url)) { e in
            XCTAssertTrue("\(e)".contains("dataset index is inconsistent"), "\(e)")
        }
    }
}

extension DatasetIndexTests {
    /// Offsets past 4 GB (an SD1.5 checkpoint is 29 GB) survive encoding; malformed bytes do not parse.
    func testTheIndexEncodesLargeOffsetsAndRefusesGarbage() throws {
        let index = DatasetIndex(groups: [
            "params": [IndexedDataset(name: "b", shape: [1280, 1280, 3, 3], digest: .max, offset: 28_000_000_000),
                       IndexedDataset(name: "a", shape: [], digest: 7, offset: 5_000_000_000)],
            "empty": [],
        ])
        let bytes = index.encoded()
        let back = try XCTUnwrap(DatasetIndex(bytes[...]))
        XCTAssertEqual(back.groups, ["empty", "params"])
        XCTAssertEqual(back.datasets["params"]!.map(\.name), ["a", "b"])
        XCTAssertEqual(back.datasets["params"]!.map(\.offset), [5_000_000_000, 28_000_000_000])
        XCTAssertEqual(back.datasets["params"]![1].shape, [1280, 1280, 3, 3])
        XCTAssertEqual(back.encoded(), bytes)
        XCTAssertTrue(back.matches([(5_000_000_000, 4), (28_000_000_000, 4 * 1280 * 1280 * 9)]))
        XCTAssertFalse(back.matches([(5_000_000_000, 4)]))
        XCTAssertNil(DatasetIndex(bytes.dropLast()))               // cut short
        XCTAssertNil(DatasetIndex((bytes + [0])[...]))            // bytes left over
        var huge = bytes
        huge.replaceSubrange(0 ..< 8, with: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertNil(DatasetIndex(huge[...]))                     // an implausible group count
    }
}
