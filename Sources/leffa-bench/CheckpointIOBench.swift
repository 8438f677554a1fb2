// Checkpoint I/O at SD1.5 size: how long a training checkpoint (weights, both Adam moments, EMA:
// four model-sized groups, as the trainer writes them) takes to save and to load on this disk.
// Through the trainer's own path: CheckpointDirectory.save (HDF5, checksums, fsync, rename) and
// latestValid (open, verify, read each group into the flat block). The four groups are views of
// one block, so a 29 GB SD1.5 checkpoint needs 7 GB of memory. Before the read the file's pages
// are dropped from the page cache (posix_fadvise DONTNEED), so the read comes from the disk.
// The anchors, in the same run: the same bytes written past the page cache (O_DIRECT, 64 MB writes,
// the way the checkpoint writer does), then with plain write() + fdatasync and read back with
// read(), and `dd conv=fsync` of as many bytes (what an administrator measures the disk with).
// The load is timed twice: right after the save, and --settle seconds later as a resume would
// read it. On this machine's virtual disk a read right after a fast write runs at half speed for
// some 20 s (the host is still writing the bytes out), and a read right after a buffered write
// can run faster than the disk (the host still holds them). Rounds alternate the order (odd
// rounds: checkpoint first, even rounds: anchors first): on a virtual disk that throttles
// sustained writes, whatever runs after a pause in writing looks faster.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaModels
import LeffaRunFormat
import LeffaCheckpoint

struct CheckpointIOBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Write and read throughput of a training checkpoint (weights, Adam moments, EMA), beside dd.",
        aliases: ["checkpoint-io"])
    @Option(help: "Model size: tiny, small or sd15.") var model: String = "sd15"
    @Option(help: "Folder for the checkpoint (removed afterwards); on the disk runs will use.") var dir: String =
        "bench-results/checkpoint-io"
    @Option(help: "Timed write + read rounds (the median is reported).") var repeats: Int = 2
    @Option(help: "Where to write the JSON results.") var json: String = "bench-results/checkpoint.json"
    @Option(help: "Seconds between the load right after the save and the load a resume would do.")
    var settle: Double = 30

    struct Report: Encodable {
        var model: String, parameters: Int, fileBytes: Int, writeSeconds: Double, readSeconds: Double,
            writeGBps: Double, readGBps: Double, readRightAfterGBps: Double, settleSeconds: Double
        var rawWriteGBps: Double, rawReadGBps: Double, rawDirectWriteGBps: Double, ddWriteGBps: Double, openSeconds: Double
        enum CodingKeys: String, CodingKey {
            case openSeconds = "open_seconds"
            case ddWriteGBps = "dd_fsync_write_gb_per_s"
            case model, parameters, fileBytes = "file_bytes", writeSeconds = "write_seconds", readSeconds =
                "read_seconds", writeGBps = "write_gb_per_s", readGBps = "read_gb_per_s"
            case readRightAfterGBps = "read_right_after_save_gb_per_s", settleSeconds = "settle_seconds"
            case rawDirectWriteGBps = "raw_direct_write_gb_per_s"
            case rawWriteGBps = "raw_disk_write_gb_per_s", rawReadGBps = "raw_disk_read_gb_per_s"
        }
    }

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0) // a line per round, also into a log file (the run takes ~15 min)
        guard let config = ModelConfig.preset(model) else {
            throw ValidationError("--model: expected tiny, small or sd15, got \(model)")
        }
        let m = try LeffaModel(config: config, seed: 1)
        let values = m.parameters.values!
        let layout = m.parameters.all.map { FlatEntry(name: $0.name, offset: $0.offset, shape: $0.shape) }
        var contents = TrainingCheckpoint(
            counters: .init(step: 1, adamStep: 1, emaUpdates: 1), stage: "bench", stageIndex: 0,
            dataPosition: 0, seed: 0, config: "", runID: "bench",
            blocks: Dictionary(uniqueKeysWithValues: TrainingCheckpoint.Block.allCases.map { ($0, values) }))
        let folder = URL(fileURLWithPath: dir)
        try? FileManager.default.removeItem(at: folder)
        defer { try? FileManager.default.removeItem(at: folder) }
        let target = Tensor(zeros: [values.count])
        try requireFreeSpace(forBytes: 4 * 4 * values.count, in: folder)
        print("leffa-bench checkpoint-io: \(model), \(values.count) parameters × 4 groups, in \(folder.path)\n")
        print("round   file GB   write s   write GB/s   read s   read GB/s   (right after the save)   raw O_DIRECT write, write / read GB/s   dd fsync GB/s")
        var writes: [Double] = [], reads: [Double] = [], readsNow: [Double] = [], opens: [Double] = [], raws: [(Double, Double, Double)] = [], dds: [Double] = [], bytes = 0
        for round in 1...max(1, repeats) {
            try? FileManager.default.removeItem(at: folder)
            func anchors() throws -> ((Double, Double, Double), Double) {
                let raw = try rawDisk(values, times: 4, at: folder.appendingPathComponent("raw.bin"))
                return (raw, try ddWrite(bytes: 4 * 4 * values.count, at: folder.appendingPathComponent("dd.bin")))
            }
            let early = round % 2 == 0 ? try anchors() : nil
            let ckpt = try CheckpointDirectory(folder, keepLast: 1)
            var t0 = Date()
            contents.counters.step = round
            let url = try contents.save(to: ckpt, layout: layout)
            let w = Date().timeIntervalSince(t0)
            bytes = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
            // The fixed part of a load: opening and checking the metadata (cold, then dropped again).
            dropFromPageCache(url.path)
            t0 = Date()
            try CheckpointReader(url: url).close()
            opens.append(Date().timeIntervalSince(t0))
            // The load a resume does, long after the save; and a load right after it, while the
            // disk may still be busy with the save's bytes.
            let now = try load(url, ckpt, into: target, expecting: values, layout: layout)
            Thread.sleep(forTimeInterval: settle)
            let r = try load(url, ckpt, into: target, expecting: values, layout: layout)
            readsNow.append(now)
            try? FileManager.default.removeItem(at: folder)
            let (raw, dd) = try early ?? anchors()
            writes.append(w); reads.append(r); raws.append(raw); dds.append(dd)
            let gb = Double(bytes) / 1e9
            print(
                String(
                    format: "%5d   %7.2f   %7.2f   %10.2f   %6.2f   %9.2f   %8.2f s %6.2f GB/s      %.2f,  %.2f / %.2f                   %.2f",
                    round, gb, w, gb / w, r, gb / r, now, gb / now, raw.2, raw.0, raw.1, dd) + (early == nil ? "" : "   (anchors ran first)"))
        }
        let w = writes.sorted()[writes.count / 2], r = reads.sorted()[reads.count / 2], gb = Double(bytes) / 1e9
        let now = readsNow.sorted()[readsNow.count / 2]
        let rw = raws.map(\.0).sorted()[raws.count / 2], rr = raws.map(\.1).sorted()[raws.count / 2]
        let rd = raws.map(\.2).sorted()[raws.count / 2]
        let dd = dds.sorted()[dds.count / 2], open = opens.sorted()[opens.count / 2]
        print(
            String(
                format:
                    "\nmedian: write %.2f GB/s (%.0f %% of a raw O_DIRECT write's %.2f, %.0f %% of dd conv=fsync's %.2f), read %.2f GB/s (%.0f %% of a raw read's %.2f); %.2f GB",
                gb / w, 100 * gb / w / rd, rd, 100 * gb / w / dd, dd, gb / r, 100 * gb / r / rr, rr, gb))
        print(
            String(
                format: "read right after the save: %.2f GB/s; the read above ran %.0f s later (--settle), as a resume would",
                gb / now, settle))
        print(String(format: "opening and checking the metadata alone (cold): %.3f s of the %.2f s load", open, r))
        try writeJSON(
            Report(
                model: model, parameters: values.count, fileBytes: bytes, writeSeconds: w, readSeconds: r,
                writeGBps: gb / w, readGBps: gb / r, readRightAfterGBps: gb / now, settleSeconds: settle,
                rawWriteGBps: rw, rawReadGBps: rr, rawDirectWriteGBps: rd, ddWriteGBps: dd, openSeconds: open), to: json)
    }

    /// One timed load of every group into `target` from a cold page cache, checked against `values`:
    /// seconds.
    func load(_ url: URL, _ ckpt: CheckpointDirectory, into target: Tensor, expecting values: Tensor, layout: [FlatEntry])
        throws -> Double
    {
        dropFromPageCache(url.path)
        let t0 = Date()
        guard
            try ckpt.latestValid({ reader -> Int in
                for block in TrainingCheckpoint.Block.allCases {
                    try TrainingCheckpoint.read(reader, block, into: target, layout: layout)
                }
                return 0
            }) != nil
        else { throw ValidationError("\(url.path): the checkpoint just written does not read back") }
        let r = Date().timeIntervalSince(t0)
        guard memcmp(target.data, values.data, values.count * 4) == 0 else {
            throw ValidationError("\(url.path): read back different values")
        }
        memset(target.data, 0, values.count * 4)
        return r
    }

    /// Fails with a clear message unless the folder's file system has room for one file of
    /// `bytes` and a tenth more: the checkpoint and the anchors are written one at a time, each
    /// removed before the next. (Twice that was needed until a reader kept HDF5's descriptor of
    /// every checkpoint it read, holding deleted files' space until the process ended.)
    func requireFreeSpace(forBytes bytes: Int, in folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        guard let free = freeBytes(folder) else { return }
        let needed = bytes + bytes / 10
        guard free >= needed else {
            throw ValidationError(
                String(
                    format: "--dir %@: %.1f GB free, the benchmark needs %.1f GB (the checkpoint's %.1f GB and a tenth)",
                    folder.path, Double(free) / 1e9, Double(needed) / 1e9, Double(bytes) / 1e9))
        }
    }

    func freeBytes(_ folder: URL) -> Int? {
        var st = statvfs()
        guard statvfs(folder.path, &st) == 0 else { return nil }
        return Int(st.f_bavail) * Int(st.f_frsize)
    }

    /// `dd if=/dev/zero of=FILE bs=64M conv=fsync` of `bytes` (rounded up to 64 MB), timed from
    /// outside: GB/s.
    func ddWrite(bytes: Int, at url: URL) throws -> Double {
        defer { unlink(url.path) }
        let blocks = max(1, (bytes + (64 << 20) - 1) / (64 << 20))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/dd")
        p.arguments = ["if=/dev/zero", "of=\(url.path)", "bs=64M", "count=\(blocks)", "conv=fsync", "status=none"]
        let t0 = Date()
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ValidationError("dd into \(url.path) failed (status \(p.terminationStatus))") }
        return Double(blocks * (64 << 20)) / 1e9 / Date().timeIntervalSince(t0)
    }

    /// The disk's own speed on the same bytes: `times` copies of `block` written with write() and
    /// fdatasync, evicted from the page cache, read back with read(); and before that, written past
    /// the page cache. GB/s (write, read, O_DIRECT write; 0 where O_DIRECT is refused).
    func rawDisk(_ block: Tensor, times: Int, at url: URL) throws -> (Double, Double, Double) {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        defer { unlink(url.path) }
        let direct = try rawDirectWrite(block, times: times, at: url)
        unlink(url.path)
        let fd = open(url.path, O_CREAT | O_TRUNC | O_RDWR, 0o644)
        guard fd >= 0 else { throw ValidationError("\(url.path): cannot create (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        let total = block.count * 4, chunk = 64 << 20
        let raw = UnsafeRawPointer(block.data)
        var t0 = Date()
        for _ in 0..<times {
            var done = 0
            while done < total {
                let n = write(fd, raw + done, min(chunk, total - done))
                guard n > 0 else {
                    throw ValidationError("\(url.path): write failed (\(String(cString: strerror(errno))))")
                }
                done += n
            }
        }
        fdatasync(fd)
        let w = Date().timeIntervalSince(t0)
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        t0 = Date()
        var offset = 0
        while true {
            let n = pread(fd, buffer, chunk, off_t(offset))
            if n <= 0 { break }
            offset += n
        }
        let r = Date().timeIntervalSince(t0)
        let gb = Double(total * times) / 1e9
        return (gb / w, gb / r, direct)
    }

    /// `times` copies of `block` written with O_DIRECT from a 64 MB aligned buffer (copied in, as
    /// the checkpoint writer does), then fsync: GB/s, or 0 if the file system refuses O_DIRECT.
    func rawDirectWrite(_ block: Tensor, times: Int, at url: URL) throws -> Double {
        let fd = open(url.path, O_CREAT | O_TRUNC | O_WRONLY | DataWrites.directFlag, 0o644)
        guard DataWrites.directFlag != 0, fd >= 0 else { if fd >= 0 { close(fd) }; return 0 }
        defer { close(fd) }
        let chunk = 64 << 20, total = block.count * 4
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        let raw = UnsafeRawPointer(block.data)
        let t0 = Date()
        var offset = 0 // in the stream of `times` copies, so every write but the last is aligned
        while offset < total * times {
            let n = min(chunk, total * times - offset)
            var filled = 0
            while filled < n {
                let from = (offset + filled) % total, piece = min(n - filled, total - from)
                (buffer + filled).copyMemory(from: raw + from, byteCount: piece)
                filled += piece
            }
            // The last piece rounded up to the alignment; the file is cut back below.
            let rounded = (n + 4095) / 4096 * 4096
            guard pwrite(fd, buffer, rounded, off_t(offset)) == rounded else { return 0 }
            offset += n
        }
        fsync(fd)
        let seconds = Date().timeIntervalSince(t0)
        _ = ftruncate(fd, off_t(offset))
        return Double(total * times) / 1e9 / seconds
    }

    /// Evicts a file's clean pages, so the next read measures the disk, not memory.
    func dropFromPageCache(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        fdatasync(fd)
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }
}
