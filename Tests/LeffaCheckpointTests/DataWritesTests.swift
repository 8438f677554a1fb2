// The datasets' bytes written in aligned chunks past the page cache (DataWrites.swift): every data
// byte lands at its offset, every byte between datasets (HDF5's metadata) is left as it was, the
// file keeps its size; both paths write the same file; a failed write leaves nothing behind.
import XCTest
import TestSupport
import LeffaTensor
@testable import LeffaCheckpoint
#if canImport(Glibc)
import Glibc
#endif

final class DataWritesTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try scratchDirectory(self) }

    /// Regions of 1 byte to 3 pages with gaps of 0 to 2 pages between them, the last one ending
    /// before, on or after a page boundary, in a file that may hold metadata after the last.
    func randomRegions(seed: UInt64, count: Int) -> (regions: [(offset: Int, length: Int)], fileSize: Int) {
        var rng = seed
        func next(_ n: Int) -> Int {
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((rng >> 33) % UInt64(n))
        }
        var out: [(offset: Int, length: Int)] = []
        var at = 512 + next(9000)
        for _ in 0 ..< count {
            let gap = [0, 0, 1, 7, 100, 4096, 5000][next(7)]
            let length = [1, 3, 4, 100, 4096, 4095, 8192, 12_289][next(8)]
            at += gap
            out.append((at, length))
            at += length
        }
        return (out, at + [0, 1, 4096][next(3)])
    }

    func testChunksAreAlignedDisjointAndCoverEveryDataByte() {
        for seed in 0 ..< 200 as Range<UInt64> {
            let (list, _) = randomRegions(seed: seed, count: 1 + Int(seed % 17))
            let memory = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
            defer { memory.deallocate() }
            let regions = list.map { DataWrites.Region(offset: $0.offset, bytes: UnsafeRawBufferPointer(start: memory, count: $0.length)) }
            for chunkBytes in [1, 4096, 8192, 3 * 4096 + 1] {
                let chunks = DataWrites.chunks(regions, chunkBytes: chunkBytes, alignment: 4096)
                let size = (chunkBytes + 4095) / 4096 * 4096
                for (k, c) in chunks.enumerated() {
                    XCTAssertEqual(c.lowerBound % 4096, 0, "seed \(seed)")
                    XCTAssertEqual(c.upperBound % 4096, 0, "seed \(seed)")
                    XCTAssertLessThanOrEqual(c.count, size, "seed \(seed)")
                    if k > 0 { XCTAssertLessThanOrEqual(chunks[k - 1].upperBound, c.lowerBound, "seed \(seed)") }
                    XCTAssertTrue(regions.contains { $0.offset < c.upperBound && $0.end > c.lowerBound }, "a chunk of metadata only")
                }
                for r in regions {
                    var covered = 0
                    for c in chunks { covered += max(0, min(c.upperBound, r.end) - max(c.lowerBound, r.offset)) }
                    XCTAssertEqual(covered, r.bytes.count, "seed \(seed), chunk \(chunkBytes)")
                }
            }
        }
    }

    /// A file of random "metadata" bytes, regions of random data written into it: afterwards the
    /// data is at its offsets and every other byte unchanged, the size too, on both paths and with
    /// chunks that start and end inside metadata, inside data and on the file's last page.
    func testDataLandsAtItsOffsetsAndEveryOtherByteStays() throws {
        for seed in 0 ..< 12 as Range<UInt64> {
            let (list, fileSize) = randomRegions(seed: seed, count: 20)
            let before = (0 ..< fileSize).map { UInt8(truncatingIfNeeded: CounterRNG.bits(seed, UInt64($0))) }
            let total = list.reduce(0) { $0 + $1.length }
            let data = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 1)
            defer { data.deallocate() }
            for i in 0 ..< total { data[i] = UInt8(truncatingIfNeeded: CounterRNG.bits(seed &+ 1000, UInt64(i))) }
            var regions: [DataWrites.Region] = []
            var used = 0
            for r in list {
                regions.append(.init(offset: r.offset, bytes: UnsafeRawBufferPointer(rebasing: data[used ..< used + r.length])))
                used += r.length
            }
            var want = before
            for r in regions { for i in 0 ..< r.bytes.count { want[r.offset + i] = r.bytes[i] } }

            for (direct, chunkBytes) in [(true, 4096), (true, 3 * 4096), (true, 16 << 20), (false, 8192)] {
                let url = dir.appendingPathComponent("f-\(seed)-\(direct)-\(chunkBytes)")
                try Data(before).write(to: url)
                let fd = open(url.path, O_RDWR)
                XCTAssertGreaterThanOrEqual(fd, 0)
                defer { close(fd) }
                let path = try DataWrites.write(
                    regions.reversed(), into: url.path, plain: fd, fileSize: fileSize, file: url.path,
                    options: .init(chunkBytes: chunkBytes, direct: direct))
                if !direct { XCTAssertEqual(path, .pageCache) }
                let got = try fileBytes(url)
                XCTAssertEqual(got.count, fileSize, "seed \(seed), direct \(direct), chunk \(chunkBytes)")
                if let k = got.indices.first(where: { got[$0] != want[$0] }) {
                    XCTFail("seed \(seed), direct \(direct), chunk \(chunkBytes): byte \(k) differs")
                }
            }
        }
    }

    /// Where the file system takes O_DIRECT (the scratch folder here), the bytes go that way.
    func testTheDirectPathIsTakenWhereTheFileSystemAllowsIt() throws {
        let probe = dir.appendingPathComponent("probe")
        try Data(count: 8192).write(to: probe)
        let fd = open(probe.path, O_RDWR | DataWrites.directFlag)
        try XCTSkipIf(DataWrites.directFlag == 0 || fd < 0, "no O_DIRECT on \(dir.path)")
        var page: UnsafeMutableRawPointer?
        XCTAssertEqual(posix_memalign(&page, 4096, 4096), 0)
        defer { free(page) }
        let accepted = pwrite(fd, page, 4096, 4096) == 4096
        close(fd)
        try XCTSkipUnless(accepted, "O_DIRECT opens but refuses writes on \(dir.path)")

        let (c, _) = try sampleContents(step: 1)
        let url = dir.appendingPathComponent("a.h5")
        XCTAssertEqual(try CheckpointWriter.write(c, to: url, version: CheckpointFormat.version), .direct)
        let r = try CheckpointReader(url: url)
        try r.verifyUnread()
        XCTAssertTrue(r.fullyVerified)
    }

    /// Both paths, with chunks as small as a page (so they cut through HDF5's metadata), give files
    /// that read back bit for bit and pass every check.
    func testSmallChunksOnBothPathsReadBackExactly() throws {
        let (c, _) = try sampleContents(step: 7)
        for (k, options) in [DataWrites.Options(chunkBytes: 4096), .init(chunkBytes: 4096, direct: false)].enumerated() {
            let url = dir.appendingPathComponent("c\(k).h5")
            try CheckpointWriter.write(c, to: url, version: CheckpointFormat.version, dataWrites: options)
            let back = try CheckpointReader(url: url).readAll()
            for g in c.groupPaths {
                for (name, t) in try c.group(g) { XCTAssertEqual(bits(try back.tensor(name, in: g)), bits(t), "\(g)/\(name)") }
            }
        }
    }

    /// A disk that fills up half-way through the data: a clear error naming the file and what to
    /// do, no file and no .tmp left, the earlier checkpoint still the newest valid one.
    func testAFailedDataWriteLeavesNothingAndKeepsTheEarlierCheckpoint() throws {
        let d = try CheckpointDirectory(dir.appendingPathComponent("ckpt"), keepLast: 0)
        try d.save(try sampleContents(step: 100).0, step: 100)
        let url = d.url.appendingPathComponent(CheckpointDirectory.fileName(step: 200))
        assertCheckpointError([url.path, "No space left on device (errno 28)", "free space there", "earlier checkpoints are intact"]) {
            try CheckpointWriter.write(
                try sampleContents(step: 200).0, to: url, version: CheckpointFormat.version,
                dataWrites: .init(chunkBytes: 4096, failingChunk: 1))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path + ".tmp"))
        XCTAssertEqual(try d.checkpoints().map(\.step), [100])
        XCTAssertEqual(try d.latestValid { try $0.int64("step") }?.value, 100)
    }
}
