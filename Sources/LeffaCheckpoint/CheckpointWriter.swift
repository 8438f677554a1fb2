// Writing one checkpoint file, atomically: HDF5 writes `NAME.tmp` beside the destination, the
// file is flushed and closed, its leffa header (CheckpointHeader.swift) written into the user
// block, the file fsync'd, renamed to NAME, and the directory fsync'd. A crash at any
// point leaves either no NAME (and a stray .tmp that readers ignore) or a complete NAME; an
// existing NAME is never replaced. Not the directory policy (naming by step, keeping the last K):
// that is CheckpointDirectory.swift.
//
// Two passes: HDF5 lays out the file (groups, attributes, every dataset allocated, contiguous, no
// compression, no type conversion) and closes it; then DataWrites.swift writes the datasets' bytes
// at the offsets HDF5 allocated, in large chunks past the page cache. Memory: a few 16 MB staging
// buffers; the writer holds no copy of the model.

import CHDF5
import Foundation
import LeffaTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum CheckpointWriter {
    /// Writes `contents` to `url` as described in Checkpoints.md. Throws `.alreadyExists` if
    /// `url` exists, `.invalidContents` for names or values that cannot be stored, `.io` / `.hdf5`
    /// when the disk refuses; on any error the temporary file is removed and `url` untouched.
    public static func write(_ contents: CheckpointContents, to url: URL) throws {
        try write(contents, to: url, version: CheckpointFormat.version)
    }

    /// `version` other than the current one only in tests (files from a future leffa), and
    /// `index: false` (files from before the dataset index).
    /// `dataWrites`: chunk size, page-cache path and failures, for tests.
    @discardableResult
    static func write(
        _ contents: CheckpointContents, to url: URL, version: Int64, index withIndex: Bool = true,
        dataWrites: DataWrites.Options = .init()
    ) throws -> DataWrites.Path {
        H5.enter()
        let path = url.path
        try validate(contents, file: path)
        if exists(path) { throw CheckpointError.alreadyExists(file: path) }
        let tmp = path + ".tmp"
        if exists(tmp) && unlink(tmp) != 0 { throw posixError(path, "cannot remove the leftover '\(tmp)'") }

        var renamed = false
        defer { if !renamed { unlink(tmp) } }
        let nonEmpty = contents.groups.values.joined().filter { $0.tensor.count > 0 }.count
        // The index's size does not depend on the offsets (fixed width), known only once written.
        let indexBytes =
            withIndex
            ? DatasetIndex(groups: contents.groups.mapValues { list in
                list.map { IndexedDataset(name: $0.name, shape: $0.tensor.shape, digest: 0, offset: 0) }
            }).encoded().count : 0
        let userBlock = CheckpointHeader.userBlockSize(extents: nonEmpty, indexBytes: indexBytes)
        let regions: [DataWrites.Region]
        let index: DatasetIndex
        do {
            (regions, index) = try writeHDF5(contents, at: tmp, version: version, userBlock: userBlock)
        } catch let f as H5Failure {
            if let e = f.systemErrno {
                throw CheckpointError.io(
                    file: path,
                    reason: "cannot \(f.operation): \(String(cString: strerror(e))) (errno \(e))\(fileSystemAdvice(e)); "
                        + "the partial file was removed, earlier checkpoints are intact")
            }
            throw CheckpointError.hdf5(file: path, operation: f.operation, message: f.message)
        }
        // HDF5 has laid out and closed the file: write the datasets' bytes where it allocated
        // them, add the leffa header (CheckpointHeader.swift), then make the bytes durable before
        // the file gets its name.
        let fd = open(tmp, O_RDWR | O_CLOEXEC)
        if fd < 0 { throw posixError(path, "cannot reopen '\(tmp)' to write its data and header") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw posixError(path, "cannot stat '\(tmp)'") }
        let size = Int(st.st_size)
        let took = try DataWrites.write(regions, into: tmp, plain: fd, fileSize: size, file: path, options: dataWrites)
        let extents = regions.map { (offset: $0.offset, length: $0.bytes.count) }
        let digest = try CheckpointHeader.metadataDigest(
            fd, size: size, userBlock: userBlock, extents: extents, path: path)
        let header = CheckpointHeader(
            version: version, userBlock: userBlock, fileSize: size, metadataDigest: digest, extents: extents,
            index: withIndex ? index : nil
        ).encoded()
        let written = header.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
        if written != header.count { throw posixError(path, "cannot write the header of '\(tmp)'") }
        if fsync(fd) != 0 { throw posixError(path, "cannot fsync '\(tmp)'") }
        if exists(path) { throw CheckpointError.alreadyExists(file: path) }
        if rename(tmp, path) != 0 { throw posixError(path, "cannot rename '\(tmp)' to the destination") }
        renamed = true
        // Make the rename itself durable.
        let dir = url.deletingLastPathComponent().path
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
        return took
    }

    /// Every problem the writer would otherwise hit half-way through the file.
    static func validate(_ c: CheckpointContents, file: String) throws {
        for (key, value) in c.meta {
            if let why = metaProblem(key, value) {
                throw CheckpointError.invalidContents(file: file, field: "meta '\(key)'", reason: why)
            }
        }
        let paths = c.groupPaths
        for path in paths {
            if let why = groupPathProblem(path) {
                throw CheckpointError.invalidContents(file: file, field: "group '/\(path)'", reason: why)
            }
            var seen = Set<String>()
            for (name, _) in c.groups[path]! {
                let field = "/\(path)/\(name)"
                if let why = tensorNameProblem(name) {
                    throw CheckpointError.invalidContents(file: file, field: "dataset '\(field)'", reason: why)
                }
                if !seen.insert(name).inserted {
                    throw CheckpointError.invalidContents(
                        file: file, field: "dataset '\(field)'", reason: "name appears twice in the group")
                }
            }
        }
        // A nested group's path must not run through a dataset: "optimizer/m" cannot coexist
        // with a dataset "m" in group "optimizer".
        for path in paths {
            let parts = path.split(separator: "/").map(String.init)
            for k in 1..<max(parts.count, 1) {
                let parent = parts[0..<k].joined(separator: "/")
                if let g = c.groups[parent], g.contains(where: { $0.name == parts[k] }) {
                    throw CheckpointError.invalidContents(
                        file: file, field: "group '/\(path)'",
                        reason: "'/\(parent)/\(parts[k])' is a dataset, it cannot also be a group")
                }
            }
        }
    }

    /// The HDF5 part: layout and attributes as in Checkpoints.md, every dataset allocated but not
    /// written. Closes every object it opens. Returns where each non-empty dataset's bytes go
    /// (absolute offsets, in file order), and the dataset index for the header.
    private static func writeHDF5(_ c: CheckpointContents, at tmp: String, version: Int64, userBlock: Int) throws
        -> (regions: [DataWrites.Region], index: DatasetIndex)
    {
        let fapl = try H5.fileAccess()
        defer { H5Pclose(fapl) }
        // Object headers and attributes from 1 MB blocks, so they lie together in a few places
        // instead of one small piece before each dataset's data: a cold load then checks them
        // with a few large reads, not thousands of small ones (about 0.9 s per file of `small`).
        try H5.check(H5Pset_meta_block_size(fapl, 1 << 20), "set the metadata block size")
        let fcpl = try H5.check(H5Pcreate(leffa_h5p_file_create()), "create a file creation property list")
        defer { H5Pclose(fcpl) }
        try H5.check(H5Pset_userblock(fcpl, hsize_t(userBlock)), "reserve a \(userBlock)-byte user block")
        let fid = try H5.check(H5Fcreate(tmp, leffa_h5f_acc_excl(), fcpl, fapl), "create '\(tmp)'")
        var fileOpen = true
        defer { if fileOpen { H5Fclose(fid) } }

        try H5.writeAttribute(fid, CheckpointFormat.formatAttribute, .string(CheckpointFormat.marker))
        try H5.writeAttribute(fid, CheckpointFormat.versionAttribute, .int64(version))
        do {
            let meta = try H5.openOrCreateGroup(fid, CheckpointFormat.metaGroup)
            defer { H5Gclose(meta) }
            for key in c.meta.keys.sorted(by: utf8Less) { try H5.writeAttribute(meta, key, c.meta[key]!) }
        }

        // Contiguous, allocated at creation, never filled: the allocation is written exactly once,
        // by DataWrites, after HDF5 has closed the file.
        let dcpl = try H5.check(H5Pcreate(leffa_h5p_dataset_create()), "create a dataset property list")
        defer { H5Pclose(dcpl) }
        try H5.check(H5Pset_layout(dcpl, H5D_CONTIGUOUS), "set the contiguous layout")
        try H5.check(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), "allocate datasets at creation")
        try H5.check(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "turn off fill values")

        var regions: [DataWrites.Region] = []
        var indexed: [String: [IndexedDataset]] = [:]
        // Digests are taken on a second thread, running ahead of the writes; each is awaited just
        // before its attribute is written, and all of them before this function returns.
        let tensors = c.groupPaths.flatMap { p in c.groups[p]!.map { $0.tensor } }
        let digests = BackgroundDigests(count: tensors.count)
        digests.hash(
            tensors.enumerated().map { (slot: $0, bytes: UnsafeRawBufferPointer(start: $1.data, count: 4 * $1.count)) })
        defer { digests.finish() }
        var next = 0
        for path in c.groupPaths {
            let tensors = c.groups[path]!
            indexed[path] = []
            let g = try openGroupPath(fid, path)
            defer { H5Gclose(g) }
            try H5.writeAttribute(g, CheckpointFormat.countAttribute, .int64(Int64(tensors.count)))
            for (name, t) in tensors {
                let field = "/\(path)/\(name)"
                let slot = next
                next += 1
                let space = try H5.dataspace(t.shape)
                defer { H5Sclose(space) }
                let d = try H5.check(
                    H5Dcreate2(g, name, leffa_h5t_ieee_f32le(), space, leffa_h5p_default(), dcpl, leffa_h5p_default()),
                    "create dataset '\(field)'")
                defer { H5Dclose(d) }
                var offset = 0
                if t.count > 0 {
                    let at = H5Dget_offset(d)
                    if at == haddr_t.max {
                        throw H5Failure(operation: "locate the data of '\(field)'", message: H5.lastError())
                    }
                    offset = Int(at)
                    regions.append(.init(offset: offset, bytes: UnsafeRawBufferPointer(start: t.data, count: 4 * t.count)))
                }
                let digest = digests.wait(slot)
                try H5.writeUInt64Attribute(d, CheckpointFormat.digestAttribute, digest)
                indexed[path]!.append(IndexedDataset(name: name, shape: t.shape, digest: digest, offset: offset))
            }
        }
        let index = DatasetIndex(groups: indexed)
        let sum = manifestChecksum(
            version: version, meta: c.meta, groups: indexed.mapValues(\.count), datasets: index.records)
        try H5.writeUInt64Attribute(fid, CheckpointFormat.checksumAttribute, sum)

        try H5.check(H5Fflush(fid, H5F_SCOPE_GLOBAL), "flush '\(tmp)'")
        fileOpen = false
        try H5.check(H5Fclose(fid), "close '\(tmp)'")
        return (regions.sorted { $0.offset < $1.offset }, index)
    }

    /// Opens (creating as needed) every component of "a/b/c" below the root.
    private static func openGroupPath(_ fid: hid_t, _ path: String) throws -> hid_t {
        var current = try H5.check(H5Gopen2(fid, "/", leffa_h5p_default()), "open the root group")
        for part in path.split(separator: "/") {
            let next: hid_t
            do { next = try H5.openOrCreateGroup(current, String(part)) } catch { H5Gclose(current); throw error }
            H5Gclose(current)
            current = next
        }
        return current
    }
}

/// lstat-based, so a dangling symlink counts as existing too.
func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

func posixError(_ file: String, _ what: String) -> CheckpointError {
    let e = errno
    return .io(file: file, reason: "\(what): \(String(cString: strerror(e)))\(fileSystemAdvice(e))")
}

/// What to do about the file-system errors a user can fix.
func fileSystemAdvice(_ e: Int32) -> String {
    switch e {
    case ENOSPC, EDQUOT: return " — free space there (or lower keep_checkpoints), then resume"
    case EROFS: return " — the file system is read-only; put the run on a writable one"
    case EACCES, EPERM: return " — no permission to write there"
    default: return ""
    }
}

