// The leffa header in the HDF5 user block (the first bytes of the file, which HDF5 and every
// HDF5 tool skip), checked before HDF5 parses a single byte. Why: HDF5 trusts its metadata, and
// some of it carries no checksum (the global heap that holds string attributes, for one), so a
// flipped bit can make libhdf5 read through a wild pointer instead of returning an error. The
// header makes every byte of the file covered by a checksum that leffa verifies itself:
//
//   - the user block: its own XXH64;
//   - the HDF5 metadata (every byte outside the user block and the datasets' raw data): one XXH64
//     over those bytes in file order, checked at open (cheap: megabytes at most);
//   - the raw float data of each dataset: its own XXH64 attribute, checked when it is read.
//
// It also states the file's length, so a truncated copy is named as such without asking HDF5.
// Layout (little-endian), also in Checkpoints.md:
//
//    0  16 bytes  "leffa-checkpoint"
//   16  u64       format version
//   24  u64       XXH64 of bytes 0 ..< 24   (these three fields keep their place in every version,
//                                           so a newer file is told from a damaged one)
//   32  u64       user block size U          (a power of two, at least 512)
//   40  u64       file size in bytes
//   48  u64       XXH64 of the metadata bytes
//   56  u64       number N of raw-data extents
//   64  u64       XXH64 of the U user-block bytes with these 8 bytes taken as zero
//   72  N × (u64 offset, u64 length)   raw data of each non-empty dataset, by offset
//   then u64 B and B bytes: the dataset index (below); B = 0 in files written before it existed
//   …   zeros up to U
//
// The dataset index lists what HDF5's object headers say, so a reader finds every dataset's
// shape, digest and file offset in the header it has checked anyway, instead of opening 2,800
// datasets through HDF5 (0.25 s per `small` file, cold) and reading them one H5Dread at a time:
//
//   u64 G, then G × (str group path, u64 dataset count)          groups in byte order
//   per group in that order, per dataset in byte order of names:
//       str name, u64 rank, u64 dim…, u64 xxh64, u64 offset     offset 0 for an empty dataset
//   (str: u64 byte length, then UTF-8)
//
// It changes no HDF5 byte and older leffa readers ignore it, so the format version stays 1.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct CheckpointHeader {
    static let magic = Array("leffa-checkpoint".utf8)
    static let fixedBytes = 72

    var version: Int64
    var userBlock: Int
    var fileSize: Int
    var metadataDigest: UInt64
    /// Raw-data extents (absolute file offsets), sorted, non-overlapping.
    var extents: [(offset: Int, length: Int)]
    /// The dataset index; nil in files written before it existed (read through HDF5 alone).
    var index: DatasetIndex?

    /// The user block size for `count` extents and an index of `indexBytes`: a power of two ≥ 512
    /// (HDF5's rule).
    static func userBlockSize(extents count: Int, indexBytes: Int) -> Int {
        var u = 512
        while u < fixedBytes + 16 * count + 8 + indexBytes { u *= 2 }
        return u
    }

    /// The U bytes of the user block.
    func encoded() -> [UInt8] {
        var out = Self.magic
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        u64(UInt64(bitPattern: version))
        u64(XXHash64.hash(out))
        u64(UInt64(userBlock)); u64(UInt64(fileSize))
        u64(metadataDigest); u64(UInt64(extents.count)); u64(0)
        for e in extents { u64(UInt64(e.offset)); u64(UInt64(e.length)) }
        let indexBytes = index?.encoded() ?? []
        u64(UInt64(indexBytes.count)); out.append(contentsOf: indexBytes)
        out.append(contentsOf: repeatElement(0, count: userBlock - out.count))
        let selfDigest = XXHash64.hash(out)
        withUnsafeBytes(of: selfDigest.littleEndian) { out.replaceSubrange(64..<72, with: $0) }
        return out
    }

    /// Reads and checks the header of the open file `fd` (`size` bytes): magic, version, its own
    /// checksum, the file length and the extents. The metadata digest is checked separately
    /// (`verifyMetadata`).
    static func read(_ fd: Int32, size: Int, path: String) throws -> CheckpointHeader {
        if size == 0 { throw CheckpointError.unreadable(file: path, field: "", reason: "the file is empty") }
        var head = [UInt8](repeating: 0, count: fixedBytes)
        let got = try preadFully(fd, &head, count: min(size, fixedBytes), at: 0, path: path)
        if got < magic.count || Array(head[0..<magic.count]) != magic {
            throw CheckpointError.notACheckpoint(
                file: path, reason: "the file does not start with the 'leffa-checkpoint' header")
        }
        if got < fixedBytes {
            throw CheckpointError.unreadable(
                file: path, field: "header", reason: "the file is truncated to \(size) bytes, inside its header")
        }
        func u64(_ at: Int) -> UInt64 {
            head.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        }
        let version = Int64(bitPattern: u64(16))
        let idDigest = XXHash64.hash(Array(head[0..<24]))
        if idDigest != u64(24) {
            throw CheckpointError.checksumMismatch(
                file: path, field: "leffa header (magic and format version)", stored: u64(24), computed: idDigest)
        }
        if version > CheckpointFormat.version {
            throw CheckpointError.newerFormat(file: path, found: version, supported: CheckpointFormat.version)
        }
        let u = u64(32), expectedSize = u64(40), n = u64(56)
        guard u >= 512, u & (u - 1) == 0, u <= 1 << 40, n <= (u - UInt64(fixedBytes)) / 16, version >= 1 else {
            throw CheckpointError.malformed(
                file: path, field: "header",
                reason:
                    "implausible values (version \(version), user block \(u), \(n) extents); the header is corrupted")
        }
        let userBlock = Int(u)
        if size < userBlock {
            throw CheckpointError.unreadable(
                file: path, field: "header",
                reason: "the file is truncated to \(size) bytes, inside its \(userBlock)-byte header")
        }
        var block = [UInt8](repeating: 0, count: userBlock)
        _ = try preadFully(fd, &block, count: userBlock, at: 0, path: path)
        let stored = u64(64)
        block.replaceSubrange(64..<72, with: repeatElement(0, count: 8))
        let computed = XXHash64.hash(block)
        if computed != stored {
            throw CheckpointError.checksumMismatch(
                file: path, field: "leffa header (first \(userBlock) bytes)", stored: stored, computed: computed)
        }
        // The header is intact from here: its numbers can be trusted.
        if UInt64(size) < expectedSize {
            throw CheckpointError.unreadable(
                file: path, field: "", reason: "the file is truncated to \(size) bytes of \(expectedSize)")
        }
        if UInt64(size) > expectedSize {
            throw CheckpointError.malformed(
                file: path, field: "",
                reason:
                    "the file has \(size) bytes, \(UInt64(size) - expectedSize) more than the \(expectedSize) written")
        }
        var extents: [(offset: Int, length: Int)] = []
        var end = userBlock
        for i in 0..<Int(n) {
            let p = fixedBytes + 16 * i
            let off = block.withUnsafeBytes {
                Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: p, as: UInt64.self)))
            }
            let len = block.withUnsafeBytes {
                Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: p + 8, as: UInt64.self)))
            }
            guard off >= end, len >= 0, off <= size - len else {
                throw CheckpointError.malformed(
                    file: path, field: "header",
                    reason: "raw-data extent \(i) (\(off), \(len)) is out of order or outside the file")
            }
            extents.append((off, len))
            end = off + len
        }
        var index: DatasetIndex?
        let at = fixedBytes + 16 * Int(n)
        if at + 8 <= userBlock {
            let b = block.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self))) }
            if b > 0 {
                guard b <= userBlock - at - 8,
                    let parsed = DatasetIndex(block[(at + 8)..<(at + 8 + b)]), parsed.matches(extents)
                else {
                    throw CheckpointError.malformed(
                        file: path, field: "header",
                        reason: "its dataset index is inconsistent (with \(b) bytes, or with the raw-data extents)")
                }
                index = parsed
            }
        }
        return CheckpointHeader(
            version: version, userBlock: userBlock, fileSize: size, metadataDigest: u64(48), extents: extents,
            index: index)
    }

    /// XXH64 of the bytes outside the user block and the extents, in file order.
    static func metadataDigest(
        _ fd: Int32, size: Int, userBlock: Int, extents: [(offset: Int, length: Int)], path: String
    ) throws -> UInt64 {
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            throw posixError(path, "cannot map the file to check its metadata")
        }
        defer { munmap(map, size) }
        var h = XXHash64()
        var start = userBlock
        for e in extents + [(offset: size, length: 0)] {
            h.update(UnsafeRawBufferPointer(start: map + start, count: e.offset - start))
            start = e.offset + e.length
        }
        return h.digest()
    }

    /// Checks the metadata digest: after this HDF5 may parse the file.
    func verifyMetadata(_ fd: Int32, path: String) throws {
        let computed = try Self.metadataDigest(fd, size: fileSize, userBlock: userBlock, extents: extents, path: path)
        if computed != metadataDigest {
            throw CheckpointError.checksumMismatch(
                file: path, field: "HDF5 metadata (the bytes outside the datasets' data)",
                stored: metadataDigest, computed: computed)
        }
    }
}

/// pread until `count` bytes or end of file; the number read.
@discardableResult
func preadFully(_ fd: Int32, _ buf: inout [UInt8], count: Int, at offset: Int, path: String) throws -> Int {
    var done = 0
    while done < count {
        let r = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
        if r < 0 { if errno == EINTR { continue }; throw posixError(path, "cannot read") }
        if r == 0 { break }
        done += r
    }
    return done
}

/// open(2)/close(2) under names that do not clash with the reader's own `close()`.
func openReadOnly(_ path: String) -> Int32 { open(path, O_RDONLY | O_CLOEXEC) }
func closeFD(_ fd: Int32) { _ = close(fd) }

/// preadv until every piece is full; a file that ends first is truncated (named as such).
func preadvFully(_ fd: Int32, _ pieces: inout [iovec], at offset: Int, path: String, field: String) throws {
    var at = offset, first = 0
    while first < pieces.count {
        let r = pieces[first...].withUnsafeBufferPointer { preadv(fd, $0.baseAddress!, Int32($0.count), off_t(at)) }
        if r < 0 {
            if errno == EINTR { continue }
            throw posixError(path, "cannot read \(field) and the data after it")
        }
        if r == 0 {
            throw CheckpointError.unreadable(file: path, field: field, reason: "the file ends at byte \(at), inside its data")
        }
        at += r
        var left = r
        while left > 0 && first < pieces.count {
            let n = min(left, pieces[first].iov_len)
            pieces[first].iov_base = pieces[first].iov_base! + n
            pieces[first].iov_len -= n
            left -= n
            if pieces[first].iov_len == 0 { first += 1 }
        }
    }
}
