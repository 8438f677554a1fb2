// The datasets' bytes, written after HDF5 has laid the file out and closed it: in large aligned
// chunks past the page cache (O_DIRECT), the way checkpoint writers for large models do it.
// Measured on this machine's virtual disk (2026-12-06): buffered writes cost the kernel about a
// CPU second per 0.3–1 GB (`dd conv=fsync` gave 0.28 and 1.11 GB/s an hour apart), O_DIRECT writes
// of 4–64 MB gave 1.7–2.1 GB/s for under a CPU second per 6 GB.
//
// Each chunk is an aligned span of the file: the datasets' bytes are copied in from memory, and the
// bytes between datasets (HDF5's metadata) are first read back from the file, so the chunk writes
// them unchanged. The file therefore holds exactly the bytes H5Dwrite would have put there. The
// calling thread fills a chunk while a second thread writes the previous one. Where O_DIRECT is
// refused (a file system without it, another OS), the same chunks go through the page cache.

import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum DataWrites {
    /// One dataset's bytes and where they go in the file.
    struct Region {
        var offset: Int
        var bytes: UnsafeRawBufferPointer
        var end: Int { offset + bytes.count }
    }

    /// How the bytes reached the file.
    enum Path: Equatable { case direct, pageCache }

    struct Options {
        /// Bytes per write; 4–64 MB all ran at the disk's speed here.
        var chunkBytes = 16 << 20
        /// Chunks in flight: one being written, the others being filled.
        var buffers = 2
        /// Off: every chunk goes through the page cache (tests compare the two paths).
        var direct = true
        /// Tests: the write of this chunk fails with ENOSPC, as a full disk would.
        var failingChunk: Int? = nil
    }

    /// open(2)'s O_DIRECT, 0 where the system has none (public for the benchmark's disk anchor).
    /// Glibc's Swift module leaves it out (a GNU extension, and defining _GNU_SOURCE in a C shim
    /// breaks other modules' view of glibc), so the values of Linux's asm/fcntl.h, per architecture.
    #if os(Linux) && (arch(x86_64) || arch(i386))
    public static let directFlag: Int32 = 0o40000
    #elseif os(Linux) && (arch(arm64) || arch(arm))
    public static let directFlag: Int32 = 0o200000
    #elseif os(Linux) && arch(powerpc64le)
    public static let directFlag: Int32 = 0o400000
    #else
    public static let directFlag: Int32 = 0
    #endif

    /// File offsets and memory alignment O_DIRECT needs: the page size, at least 4096 (every
    /// logical block size in use divides it).
    static var alignment: Int { max(4096, Int(sysconf(Int32(_SC_PAGESIZE)))) }

    /// The aligned spans written, in file order, for non-empty regions sorted by offset: each
    /// covers data (never only metadata), none overlap, each is at most `chunkBytes` (rounded up to
    /// the alignment) long.
    static func chunks(_ regions: [Region], chunkBytes: Int, alignment a: Int) -> [Range<Int>] {
        let size = max(a, (chunkBytes + a - 1) / a * a)
        var out: [Range<Int>] = []
        var i = 0
        var pos = 0 // every data byte below pos lies in a chunk already
        while i < regions.count {
            let r = regions[i]
            if pos >= r.end { i += 1; continue }
            let start = max(pos, r.offset) / a * a
            var end = start + size
            // Trim to the last data byte below `end`, so a chunk never runs on through metadata.
            var last = start
            var j = i
            while j < regions.count && regions[j].offset < end {
                last = max(last, min(end, regions[j].end))
                j += 1
            }
            end = min(end, (last + a - 1) / a * a)
            out.append(start ..< end)
            pos = end
        }
        return out
    }

    /// Writes every region at its offset into the file at `tmp`, open read-write as `plain` (the
    /// caller's descriptor, which stays open), whose size stays `fileSize`; `file` names it in
    /// errors. Regions must not overlap. Returns the path the bytes took.
    static func write(
        _ regions: [Region], into tmp: String, plain: Int32, fileSize: Int, file: String, options: Options = .init()
    ) throws -> Path {
        let regions = regions.filter { $0.bytes.count > 0 }.sorted { $0.offset < $1.offset }
        // Closed by the writer (which may give up on it half-way).
        let direct = options.direct && directFlag != 0 ? open(tmp, O_RDWR | O_CLOEXEC | directFlag) : -1

        let a = alignment
        let spans = chunks(regions, chunkBytes: options.chunkBytes, alignment: a)
        let writer = try ChunkWriter(
            plain: plain, direct: direct, count: max(1, options.buffers),
            bytes: spans.map(\.count).max() ?? a, alignment: a, file: file, failingChunk: options.failingChunk)
        var first = 0 // regions before `first` end before the current span
        for (k, span) in spans.enumerated() {
            guard let buffer = writer.nextBuffer() else { break } // an earlier write failed
            let base = buffer.baseAddress!
            var p = span.lowerBound
            while first < regions.count && regions[first].end <= span.lowerBound { first += 1 }
            var j = first
            while j < regions.count && regions[j].offset < span.upperBound {
                let r = regions[j]
                let lo = max(span.lowerBound, r.offset), hi = min(span.upperBound, r.end)
                if lo > p { try writer.readBack(p ..< lo, into: base + (p - span.lowerBound), fileSize: fileSize) }
                (base + (lo - span.lowerBound)).copyMemory(from: r.bytes.baseAddress! + (lo - r.offset), byteCount: hi - lo)
                p = hi
                j += 1
            }
            if p < span.upperBound {
                try writer.readBack(p ..< span.upperBound, into: base + (p - span.lowerBound), fileSize: fileSize)
            }
            writer.write(buffer, span: span, index: k)
        }
        try writer.finish()
        // The last chunk may run past the end of the file (it was rounded up to the alignment).
        if let last = spans.last, last.upperBound > fileSize, ftruncate(plain, off_t(fileSize)) != 0 {
            throw posixError(file, "cannot truncate '\(tmp)' to \(fileSize) bytes")
        }
        return writer.usedDirect ? .direct : .pageCache
    }
}

/// The buffers, the writing thread and the first error. Buffers are handed out by `nextBuffer()`
/// once the writing thread has returned them.
private final class ChunkWriter: @unchecked Sendable {
    let plain: Int32, file: String, alignment: Int, failingChunk: Int?
    private var direct: Int32
    private let buffers: [UnsafeMutableRawBufferPointer]
    private let available: DispatchSemaphore
    private var nextIndex = 0
    private let queue = DispatchQueue(label: "leffa.checkpoint.data-writes")
    private let lock = NSLock()
    private var failure: CheckpointError?
    private var wroteDirect = false

    init(plain: Int32, direct: Int32, count: Int, bytes: Int, alignment: Int, file: String, failingChunk: Int?) throws {
        self.plain = plain
        self.direct = direct
        self.file = file
        self.alignment = alignment
        self.failingChunk = failingChunk
        var made: [UnsafeMutableRawBufferPointer] = []
        for _ in 0 ..< count {
            var raw: UnsafeMutableRawPointer?
            if posix_memalign(&raw, alignment, bytes) != 0 || raw == nil {
                for b in made { free(b.baseAddress) }
                if direct >= 0 { close(direct) }
                throw CheckpointError.io(file: file, reason: "cannot allocate \(bytes) bytes to stage the datasets' writes")
            }
            made.append(UnsafeMutableRawBufferPointer(start: raw, count: bytes))
        }
        buffers = made
        available = DispatchSemaphore(value: count)
    }

    deinit {
        queue.sync {}
        for b in buffers { free(b.baseAddress) }
        if direct >= 0 { close(direct) }
    }

    var usedDirect: Bool { lock.withLock { wroteDirect } }

    /// A buffer free to fill, or nil once a write has failed.
    func nextBuffer() -> UnsafeMutableRawBufferPointer? {
        available.wait()
        if lock.withLock({ failure != nil }) { available.signal(); return nil }
        defer { nextIndex = (nextIndex + 1) % buffers.count }
        return buffers[nextIndex]
    }

    /// The file's current bytes in `range` (HDF5's metadata between datasets); zeros past its end.
    func readBack(_ range: Range<Int>, into dst: UnsafeMutableRawPointer, fileSize: Int) throws {
        var done = 0
        let inFile = max(0, min(range.upperBound, fileSize) - range.lowerBound)
        while done < inFile {
            let r = pread(plain, dst + done, inFile - done, off_t(range.lowerBound + done))
            if r < 0 {
                if errno == EINTR { continue }
                throw failed("read back the metadata at \(range)", errno: errno)
            }
            if r == 0 { break }
            done += r
        }
        if done < range.count { memset(dst + done, 0, range.count - done) }
    }

    /// Queues the write of `buffer`'s first `span.count` bytes at `span.lowerBound`.
    func write(_ buffer: UnsafeMutableRawBufferPointer, span: Range<Int>, index: Int) {
        let job = Job(buffer: buffer, span: span, index: index)
        queue.async { [self] in
            defer { available.signal() }
            if lock.withLock({ failure != nil }) { return }
            if let error = perform(job) { lock.withLock { if failure == nil { failure = error } } }
        }
    }

    /// Waits for every queued write; the first error, if any.
    func finish() throws {
        queue.sync {}
        if let failure = lock.withLock({ failure }) { throw failure }
    }

    private func perform(_ job: Job) -> CheckpointError? {
        if job.index == failingChunk {
            return failed("write the datasets at \(job.span)", errno: ENOSPC)
        }
        let base = job.buffer.baseAddress!
        var done = 0
        while done < job.span.count {
            // O_DIRECT only from aligned positions: after a short write, the rest goes buffered.
            let viaDirect = direct >= 0 && done % alignment == 0
            let w = pwrite(viaDirect ? direct : plain, base + done, job.span.count - done, off_t(job.span.lowerBound + done))
            if w < 0 {
                if errno == EINTR { continue }
                if viaDirect && errno == EINVAL {
                    // This file system takes O_DIRECT at open but not these writes: page cache from here on.
                    close(direct)
                    direct = -1
                    continue
                }
                return failed("write the datasets at \(job.span)", errno: errno)
            }
            if viaDirect { lock.withLock { wroteDirect = true } }
            done += w
        }
        return nil
    }

    /// Worded like the writer's HDF5 failures: the errno, what to do, and that nothing else was
    /// touched (CheckpointWriter removes the partial file).
    private func failed(_ what: String, errno e: Int32) -> CheckpointError {
        .io(
            file: file,
            reason: "cannot \(what): \(String(cString: strerror(e))) (errno \(e))\(fileSystemAdvice(e)); "
                + "the partial file was removed, earlier checkpoints are intact")
    }

    private struct Job: @unchecked Sendable {
        var buffer: UnsafeMutableRawBufferPointer, span: Range<Int>, index: Int
    }
}
