// The checkpoint folder: naming, keeping the last K, and finding the newest intact checkpoint
// when the newest ones are truncated, corrupted, left half-written by a crash, or from a newer
// leffa. Damaged files are reported by name and kept (moved aside), never deleted.
import XCTest
import TestSupport
import LeffaTensor
@testable import LeffaCheckpoint

final class DirectoryTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try scratchDirectory(self) }

    /// A directory holding checkpoints of steps 100, 200, 300 (keeping all).
    func threeCheckpoints() throws -> CheckpointDirectory {
        let d = try CheckpointDirectory(dir.appendingPathComponent("ckpt"), keepLast: 0)
        for s in [100, 200, 300] { try d.save(try sampleContents(step: Int64(s), seed: UInt64(s)).0, step: s) }
        return d
    }

    func steps(_ d: CheckpointDirectory) throws -> [Int] { try d.checkpoints().map(\.step) }

    func testNames() {
        XCTAssertEqual(CheckpointDirectory.fileName(step: 1234), "step-00001234.h5")
        XCTAssertEqual(CheckpointDirectory.fileName(step: 123_456_789), "step-123456789.h5")
        XCTAssertEqual(CheckpointDirectory.step(ofFileName: "step-00001234.h5"), 1234)
        for bad in ["step-00001234.h5.tmp", "step-00001234.h5.corrupt", "step-.h5", "step-12a.h5", "x.h5", "step-1.H5"] {
            XCTAssertNil(CheckpointDirectory.step(ofFileName: bad), bad)
        }
    }

    func testLatestValidReturnsNewest() throws {
        let d = try threeCheckpoints()
        XCTAssertEqual(try steps(d), [100, 200, 300])
        let (url, c) = try XCTUnwrap(try d.latestValid())
        XCTAssertEqual(url.lastPathComponent, "step-00000300.h5")
        XCTAssertEqual(try c.int64("step"), 300)
        XCTAssertEqual(c.file, url.path)
        XCTAssertTrue(d.warnings.isEmpty)
        XCTAssertNil(try CheckpointDirectory(dir.appendingPathComponent("empty")).latestValid())
    }

    func testKeepLast() throws {
        let d = try CheckpointDirectory(dir.appendingPathComponent("k"), keepLast: 2)
        let (c, _) = try sampleContents(step: 0)
        for s in 1 ... 5 {
            try d.save(c, step: s)
            XCTAssertEqual(try steps(d), Array(max(1, s - 1) ... s))
        }
        // A stray higher step (an abandoned run) never causes the file just saved to be deleted.
        try d.save(c, step: 50)
        try d.save(c, step: 6)
        XCTAssertEqual(try steps(d), [6, 50])
        d.keepLast = 0
        try d.save(c, step: 7)
        XCTAssertEqual(try steps(d), [6, 7, 50])
        assertCheckpointError(["step-00000007.h5", "already exists"]) { try d.save(c, step: 7) }
        assertCheckpointError(["step", "negative"]) { try d.save(c, step: -1) }
    }

    func testTruncatedNewestFallsBackWithWarning() throws {
        let d = try threeCheckpoints()
        let newest = d.url(step: 300)
        try truncate(newest, to: try fileSize(newest) / 2)
        let (url, c) = try XCTUnwrap(try d.latestValid())
        XCTAssertEqual(url.lastPathComponent, "step-00000200.h5")
        XCTAssertEqual(try c.int64("step"), 200)
        XCTAssertEqual(d.warnings.count, 2)
        let w = d.warnings.joined(separator: "\n")
        for s in ["checkpoint step-00000300.h5 is truncated", "moved aside to step-00000300.h5.corrupt", "resuming from step-00000200.h5"] {
            XCTAssertTrue(w.contains(s), "warning '\(w)' lacks '\(s)'")
        }
        // Kept for inspection, out of the listing; the same step can be saved again.
        XCTAssertTrue(FileManager.default.fileExists(atPath: newest.path + ".corrupt"))
        XCTAssertEqual(try steps(d), [100, 200])
        try d.save(try sampleContents(step: 300).0, step: 300)
        XCTAssertEqual(try d.latestValid()?.url.lastPathComponent, "step-00000300.h5")
    }

    func testReaderReportsTruncationEmptyAndForeignFiles() throws {
        let url = dir.appendingPathComponent("t.h5")
        try CheckpointWriter.write(try sampleContents(step: 1).0, to: url)
        let size = try fileSize(url)
        for cut in [size - 1, size / 2, 100] {
            try truncate(url, to: cut)
            let e = assertCheckpointError([url.path, "truncated", "\(cut) bytes"]) { try CheckpointReader(url: url) }
            XCTAssertEqual(e?.isDamage, true)
            XCTAssertEqual(e?.damageKind, "truncated")
        }
        try truncate(url, to: 0)
        assertCheckpointError([url.path, "the file is empty"]) { try CheckpointReader(url: url) }
        let junk = dir.appendingPathComponent("junk.h5")
        try Data((0 ..< 5000).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: junk)
        let e = assertCheckpointError([junk.path, "not a leffa checkpoint", "'leffa-checkpoint' header"]) { try CheckpointReader(url: junk) }
        XCTAssertEqual(e?.damageKind, "corrupted")
        assertCheckpointError([dir.appendingPathComponent("absent.h5").path, "cannot open"]) {
            try CheckpointReader(url: dir.appendingPathComponent("absent.h5"))
        }
    }

    func testCorruptedDatasetBytesAreDetectedAndSkipped() throws {
        let d = try threeCheckpoints()
        let newest = d.url(step: 300)
        // Flip bytes in the middle of a parameter's data (found by its leading bytes).
        let (_, flats) = try sampleContents(step: 300, seed: 300)
        let e = TinyModel.layout[2]
        let view = Tensor(shape: e.shape, storage: Storage(viewOf: flats["params"]!.storage, offset: e.offset, count: e.count))
        let at = try XCTUnwrap(try offset(of: leadingBytes(view, 16), in: newest))
        try flipBytes(newest, at: at + 4 * e.count / 2)

        // The reader opens it (metadata is intact) but reading that dataset fails, naming it.
        let r = try CheckpointReader(url: newest)
        let err = assertCheckpointError([newest.path, "dataset '/params/\(e.name)'", "checksum mismatch", "damaged"]) {
            try r.readGroup("params", into: Tensor(zeros: [TinyModel.count]), layout: TinyModel.layout)
        }
        XCTAssertEqual(err?.isDamage, true)
        r.close()

        let (url, _) = try XCTUnwrap(try d.latestValid())
        XCTAssertEqual(url.lastPathComponent, "step-00000200.h5")
        XCTAssertEqual(d.warnings.count, 2)
        XCTAssertTrue(d.warnings[0].contains("checkpoint step-00000300.h5 is corrupted (dataset '/params/\(e.name)': checksum mismatch"),
                      d.warnings[0])
        XCTAssertEqual(d.warnings[1], "resuming from step-00000200.h5, the newest valid checkpoint")
    }

    func testCorruptedMetaIsDetected() throws {
        let url = dir.appendingPathComponent("meta.h5")
        try CheckpointWriter.write(try sampleContents(step: 1).0, to: url)
        // Change "highres" to "highrez" where the stage string is stored.
        let at = try XCTUnwrap(try offset(of: Array("highres".utf8), in: url))
        let h = try FileHandle(forUpdating: url)
        try h.seek(toOffset: UInt64(at + 6)); try h.write(contentsOf: Data("z".utf8)); try h.close()
        let e = assertCheckpointError([url.path, "HDF5 metadata", "checksum mismatch"]) { try CheckpointReader(url: url) }
        XCTAssertEqual(e?.isDamage, true)
    }

    func testVerificationCoversWhatTheLoaderDidNotRead() throws {
        let d = try threeCheckpoints()
        // Damage the newest checkpoint's EMA, then load only params: still detected.
        let newest = d.url(step: 300)
        let (_, flats) = try sampleContents(step: 300, seed: 300)
        let at = try XCTUnwrap(try offset(of: leadingBytes(flats["ema"]!, 16), in: newest))
        try flipBytes(newest, at: at + 8)

        let params = Tensor(zeros: [TinyModel.count])
        let loaded = try XCTUnwrap(try d.latestValid { r -> Int64 in
            try r.readGroup("params", into: params, layout: TinyModel.layout)
            return try r.int64("step")
        })
        XCTAssertEqual(loaded.value, 200)
        XCTAssertEqual(bits(params), bits(try sampleContents(step: 200, seed: 200).1["params"]!))
        XCTAssertTrue(d.warnings[0].contains("dataset '/ema/unet.conv_in.weight'"), d.warnings[0])
    }

    func testEveryCheckpointDamagedReturnsNil() throws {
        let d = try threeCheckpoints()
        for s in [100, 200, 300] { try truncate(d.url(step: s), to: 2000) }
        XCTAssertNil(try d.latestValid())
        // Each damaged file, then the decision, said only once all three were tried.
        XCTAssertEqual(d.warnings.count, 4)
        XCTAssertEqual(d.warnings.last, "no valid checkpoint is left (3 damaged)")
        XCTAssertTrue(d.warnings.dropLast().allSatisfy { $0.hasPrefix("checkpoint step-") && !$0.contains("left") }, "\(d.warnings)")
        XCTAssertTrue(try steps(d).isEmpty)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: d.url.path).filter { $0.hasSuffix(".corrupt") }.count, 3)
    }

    func testModelMismatchIsThrownNotSkipped() throws {
        let d = try threeCheckpoints()
        var layout = TinyModel.layout
        layout[0].shape = [8, 4, 3, 3]
        let block = Tensor(zeros: [TinyModel.count])
        assertCheckpointError(["step-00000300.h5", "'unet.conv_in.weight' is [8, 12, 3, 3], expected [8, 4, 3, 3]"]) {
            try d.latestValid { try $0.readGroup("params", into: block, layout: layout) }
        }
        XCTAssertEqual(try steps(d), [100, 200, 300], "nothing moved aside")
    }

    func testNewerFormatIsAClearErrorNotAFallback() throws {
        let d = try threeCheckpoints()
        let future = d.url(step: 400)
        try CheckpointWriter.write(try sampleContents(step: 400).0, to: future, version: CheckpointFormat.version + 1)
        assertCheckpointError([future.path, "written by format version \(CheckpointFormat.version + 1)",
                               "this build reads up to \(CheckpointFormat.version)", "upgrade leffa"]) {
            try CheckpointReader(url: future)
        }
        let e = assertCheckpointError(["upgrade leffa"]) { try d.latestValid() }
        XCTAssertEqual(e?.isDamage, false)
        XCTAssertTrue(FileManager.default.fileExists(atPath: future.path), "a newer file is left alone")
    }

    func testLeftoverTemporaryFileFromACrashIsIgnoredThenRemoved() throws {
        let d = try threeCheckpoints()
        // A crash half-way through writing step 400: only the .tmp exists, and it is incomplete.
        let whole = try fileBytes(d.url(step: 300))
        let tmp = d.url.appendingPathComponent("step-00000400.h5.tmp")
        try Data(whole.prefix(whole.count / 2)).write(to: tmp)

        XCTAssertEqual(try steps(d), [100, 200, 300])
        XCTAssertEqual(try d.latestValid()?.url.lastPathComponent, "step-00000300.h5")
        XCTAssertTrue(d.warnings.isEmpty)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.path), "readers never remove files")

        try d.save(try sampleContents(step: 400).0, step: 400)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.path))
        XCTAssertEqual(try d.latestValid()?.url.lastPathComponent, "step-00000400.h5")
        XCTAssertEqual(try d.latestValid()?.contents.int64("step"), 400)
    }

    /// Every way of reading a checkpoint closes the file again, HDF5's descriptor included. A
    /// descriptor left open keeps a deleted checkpoint's disk space: keep-last would free nothing.
    func testReadingLeavesNoDescriptorOpen() throws {
        let d = try threeCheckpoints()
        let url = d.url.appendingPathComponent(CheckpointDirectory.fileName(step: 300))
        let old = dir.appendingPathComponent("no-index.h5")
        try CheckpointWriter.write(try sampleContents(step: 5).0, to: old, version: CheckpointFormat.version, index: false)
        for file in [url, old] {
            try CheckpointReader(url: file).close()
            XCTAssertEqual(descriptors(to: file), 0, "\(file.lastPathComponent): open then close")
            do { _ = try CheckpointReader(url: file).readAll() }
            XCTAssertEqual(descriptors(to: file), 0, "\(file.lastPathComponent): readAll, then released")
        }
        _ = try d.latestValid { try $0.readAll() }
        XCTAssertEqual(try d.latestValid()?.contents.int64("step"), 300)
        XCTAssertEqual(descriptors(to: url), 0, "latestValid")
        try FileManager.default.removeItem(at: url)
        XCTAssertEqual(descriptors(to: url, deleted: true), 0, "a deleted checkpoint still open")
    }
}

/// How many of this process's file descriptors point at `url` (Linux: /proc/self/fd).
func descriptors(to url: URL, deleted: Bool = false) -> Int {
    let target = url.resolvingSymlinksInPath().path + (deleted ? " (deleted)" : "")
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return fds.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) == target }.count
}
