// Reading one checkpoint file, checking everything on the way. Opening first checks the leffa
// header and, through it, every metadata byte (CheckpointHeader.swift), so HDF5 never parses a
// damaged byte; then it reads the format marker and version, the meta values, every group's
// dataset names, shapes and digests, and checks the manifest checksum over them. Each dataset's
// float data is checked against its own digest when it is read; `verifyUnread` checks the ones
// nobody asked for. Not thread-safe: one reader per thread.
//
// Files with a dataset index in their header (CheckpointHeader.swift; every file written since
// 2026-12-06) are read without HDF5 beyond the root and meta attributes: shapes and digests come
// from the index, which the manifest checksum then checks against what HDF5 was told, and the
// data is read with preadv straight from the file, in file order, one call per run of adjacent
// datasets. Older files are walked and read through HDF5, dataset by dataset.
//
// Memory: reads go straight into the caller's memory (a new tensor, or a slice of a flat block);
// verifying unread datasets needs one buffer of at most 64 MB, or the largest of them.

import CHDF5
import Foundation
import LeffaTensor

public final class CheckpointReader: CheckpointMetaReading {
    public let url: URL
    public var file: String { url.path }
    public let formatVersion: Int64
    public let meta: [String: CheckpointValue]
    /// Checkpoint groups (those carrying `tensor_count`), in byte order.
    public let groupPaths: [String]

    /// `offset`: the raw data's file offset from the header's index, nil without an index.
    struct Info {
        var name: String; var shape: [Int]; var digest: UInt64; var offset: Int? = nil
        /// Elements, and bytes of float32 data.
        var count: Int { shape.reduce(1, *) }
        var byteCount: Int { 4 * count }
    }
    /// group → datasets in byte order of their names.
    private let infos: [String: [Info]]
    private let index: [String: [String: Int]]
    /// "group/name" of every dataset whose data was read and matched its digest.
    private var verified = Set<String>()
    /// The HDF5 file, open only for files without an index.
    private var fid: hid_t
    /// The file for direct reads (files with an index), else -1.
    private var fd: Int32
    private var closed = false
    /// True when the file's header carries the dataset index (data read without HDF5).
    public var readsDirectly: Bool { fd >= 0 }

    /// Opens `url` and checks its structure and manifest checksum. Throws a damage error
    /// (`isDamage`) for truncated, corrupted or foreign files, `.newerFormat` for files from a
    /// later leffa.
    public init(url: URL) throws {
        H5.enter()
        self.url = url
        let opened = try Self.openAndCheck(url.path)
        fid = opened.fid
        fd = opened.fd
        formatVersion = opened.version
        meta = opened.meta
        infos = opened.infos
        groupPaths = opened.infos.keys.sorted(by: utf8Less)
        index = opened.infos.mapValues { list in
            Dictionary(uniqueKeysWithValues: list.enumerated().map { ($1.name, $0) })
        }
    }

    /// Opens the file and reads and checks all its metadata; closes the file again on failure.
    private static func openAndCheck(_ path: String) throws -> (
        fid: hid_t, fd: Int32, version: Int64, meta: [String: CheckpointValue], infos: [String: [Info]]
    ) {
        // Every byte HDF5 will parse is checked first (CheckpointHeader.swift).
        let fd = openReadOnly(path)
        if fd < 0 { throw posixError(path, "cannot open") }
        var keepFD = false
        defer { if !keepFD { closeFD(fd) } }
        var st = stat()
        if fstat(fd, &st) != 0 { throw posixError(path, "cannot stat") }
        let size = Int(st.st_size)
        let header = try CheckpointHeader.read(fd, size: size, path: path)
        try header.verifyMetadata(fd, path: path)
        // HDF5 then reads dataset by dataset, thousands of small reads that each wait for the
        // disk on a cold cache: ask the kernel to read the file ahead, in large requests.
        // (Not for direct reads, which read the file in order in large requests themselves: there
        // it made cold loads of `small` 2× slower.)
        if header.index == nil { _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_WILLNEED)) }

        let fapl = try wrap(path, "", try H5.fileAccess())
        defer { H5Pclose(fapl) }
        let fid = H5Fopen(path, leffa_h5f_acc_rdonly(), fapl)
        if fid < 0 {
            throw CheckpointError.unreadable(
                file: path, field: "", reason: "HDF5 cannot open it (\(H5.lastError())); the file has \(size) bytes")
        }
        var ok = false
        defer { if !ok { H5Fclose(fid) } }

        // Marker and version first: a newer format may change everything after them.
        guard try wrap(path, "/", try H5.attributeExists(fid, CheckpointFormat.formatAttribute)),
            case .string(CheckpointFormat.marker)? = try? H5.readAttribute(fid, CheckpointFormat.formatAttribute)
        else {
            throw CheckpointError.notACheckpoint(
                file: path,
                reason:
                    "the root group has no attribute '\(CheckpointFormat.formatAttribute)' = '\(CheckpointFormat.marker)'"
            )
        }
        guard try wrap(path, "/", try H5.attributeExists(fid, CheckpointFormat.versionAttribute)),
            case .int64(let version)? = try? H5.readAttribute(fid, CheckpointFormat.versionAttribute)
        else {
            throw CheckpointError.malformed(
                file: path, field: "attribute '/\(CheckpointFormat.versionAttribute)'",
                reason: "missing or not an int64")
        }
        if version != header.version {
            throw CheckpointError.malformed(
                file: path, field: "attribute '/\(CheckpointFormat.versionAttribute)'",
                reason: "\(version), but the leffa header says \(header.version)")
        }
        let stored = try uint64Attribute(path, fid, CheckpointFormat.checksumAttribute, at: "/")

        // Meta values. The group is closed at the end of this block, before the file may be.
        var meta: [String: CheckpointValue] = [:]
        do {
            let metaID = H5Gopen2(fid, CheckpointFormat.metaGroup, leffa_h5p_default())
            if metaID < 0 {
                _ = H5.lastError()
                throw CheckpointError.malformed(
                    file: path, field: "group '/\(CheckpointFormat.metaGroup)'", reason: "missing")
            }
            defer { H5Gclose(metaID) }
            for key in try wrap(path, "group '/meta'", try H5.attributeNames(metaID)) {
                do {
                    meta[key] = try H5.readAttribute(metaID, key)
                } catch let u as H5.UnsupportedAttribute {
                    throw CheckpointError.malformed(
                        file: path, field: "meta attribute '\(key)'",
                        reason: "\(u.description), expected int64, float64, string or a 1-D int64/uint64 array")
                } catch let f as H5Failure {
                    throw CheckpointError.unreadable(file: path, field: "meta attribute '\(key)'", reason: f.message)
                }
            }
        }

        // Groups and datasets (from the header's index, else from HDF5), then the manifest over
        // all of it: it also proves the index says what HDF5 was told.
        var infos: [String: [Info]] = [:]
        if let index = header.index {
            for g in index.groups {
                infos[g] = index.datasets[g]!.map { Info(name: $0.name, shape: $0.shape, digest: $0.digest, offset: $0.offset) }
            }
        } else {
            try walk(path, fid, prefix: "", into: &infos)
        }
        let records = infos.flatMap { g, list in
            list.map { DatasetRecord(group: g, name: $0.name, shape: $0.shape, digest: $0.digest) }
        }
        let computed = manifestChecksum(
            version: version, meta: meta, groups: infos.mapValues(\.count), datasets: records)
        if computed != stored {
            throw CheckpointError.checksumMismatch(
                file: path, field: "manifest (meta values, names, shapes and dataset digests)",
                stored: stored, computed: computed)
        }
        if header.index != nil {
            // Everything else is read straight from the file: HDF5 has done its part. Its close
            // is checked: with an object still open it fails (H5F_CLOSE_SEMI) and HDF5 would keep
            // its descriptor, and with it the disk space of the file once keep-last deletes it.
            ok = true
            if H5Fclose(fid) < 0 {
                throw CheckpointError.hdf5(file: path, operation: "close the file in HDF5", message: H5.lastError())
            }
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
            keepFD = true
            return (-1, fd, version, meta, infos)
        }
        ok = true
        return (fid, -1, version, meta, infos)
    }

    deinit { close() }

    /// Closes the file (also done on deinit). Reads after this throw.
    public func close() {
        if fid >= 0 { H5Fclose(fid); fid = -1 }
        if fd >= 0 { closeFD(fd); fd = -1 }
        closed = true
    }

    /// Dataset names of a group, in byte order.
    public func names(in group: String) throws -> [String] { try list(group).map(\.name) }

    public func shape(of name: String, in group: String) throws -> [Int] { try info(name, group).shape }

    /// Reads one dataset into a new tensor and checks its digest.
    public func read(_ name: String, in group: String) throws -> Tensor {
        let i = try info(name, group)
        let t = Tensor(zeros: i.shape)
        try readData([(normalizedGroupPath(group), i, t.data)])
        return t
    }

    /// Reads every dataset of a group into new tensors (byte order of names).
    public func readGroup(_ group: String) throws -> [(name: String, tensor: Tensor)] {
        let g = normalizedGroupPath(group)
        let tensors = try list(g).map { (name: $0.name, tensor: Tensor(zeros: $0.shape)) }
        try readData(zip(list(g), tensors).map { (g, $0, $1.tensor.data) })
        return tensors
    }

    /// Reads a group into one flat block, entry by entry, after checking that the group holds
    /// exactly the layout's names with the layout's shapes (all differences in one error).
    public func readGroup(_ group: String, into flat: Tensor, layout: [FlatEntry]) throws {
        let g = normalizedGroupPath(group)
        let stored = try list(g)
        var want: [String: FlatEntry] = [:]
        for e in layout {
            if want.updateValue(e, forKey: e.name) != nil {
                throw CheckpointError.invalidContents(
                    file: file, field: "layout of '/\(g)'", reason: "name '\(e.name)' appears twice")
            }
            if e.shape.contains(where: { $0 < 0 }) || e.offset < 0 || e.offset + e.count > flat.count {
                throw CheckpointError.invalidContents(
                    file: file, field: "layout of '/\(g)'",
                    reason:
                        "entry '\(e.name)' (offset \(e.offset), shape \(e.shape)) does not fit the flat block of \(flat.count) floats"
                )
            }
        }
        let have = Dictionary(uniqueKeysWithValues: stored.map { ($0.name, $0) })
        let missing = layout.map(\.name).filter { have[$0] == nil }
        let unexpected = stored.map(\.name).filter { want[$0] == nil }
        let wrong = layout.compactMap { e -> CheckpointError.WrongShape? in
            guard let i = have[e.name], i.shape != e.shape else { return nil }
            return .init(name: e.name, expected: e.shape, actual: i.shape)
        }
        if !missing.isEmpty || !unexpected.isEmpty || !wrong.isEmpty {
            throw CheckpointError.layoutMismatch(
                file: file, group: g, missing: missing, unexpected: unexpected, wrongShapes: wrong)
        }
        try readData(layout.map { (g, have[$0.name]!, flat.data + $0.offset) })
    }

    /// Everything in the file as new tensors.
    public func readAll() throws -> CheckpointContents {
        var c = CheckpointContents(meta: meta, file: file)
        for g in groupPaths { c.setGroup(g, try readGroup(g).map { ($0.name, $0.tensor) }) }
        return c
    }

    /// Reads and checks every dataset not read yet, through one scratch buffer.
    public func verifyUnread() throws {
        let todo = groupPaths.flatMap { g in infos[g]!.filter { !verified.contains(g + "/" + $0.name) }.map { (g, $0) }
        }
        guard let largest = todo.map({ $0.1.count }).max() else { return }
        if !readsDirectly {
            let scratch = Storage(count: largest)
            for (g, i) in todo { try readData([(g, i, scratch.base)]) }
            return
        }
        // Direct reads go in batches that fill one scratch buffer side by side.
        let capacity = max(largest, 16 << 20)
        let scratch = Storage(count: capacity)
        var batch: [(String, Info, UnsafeMutablePointer<Float>)] = []
        var used = 0
        for (g, i) in todo.sorted(by: { $0.1.offset! < $1.1.offset! }) {
            let n = i.count
            if used + n > capacity { try readData(batch); batch = []; used = 0 }
            batch.append((g, i, scratch.base + used))
            used += n
        }
        try readData(batch)
    }

    /// True when every dataset has been read and matched its digest.
    public var fullyVerified: Bool {
        infos.allSatisfy { g, l in l.allSatisfy { verified.contains(g + "/" + $0.name) } }
    }

    /// File size in bytes, data and metadata.
    public var byteCount: Int {
        var st = stat()
        return stat(file, &st) == 0 ? Int(st.st_size) : 0
    }

    // MARK: - Internals

    private func list(_ group: String) throws -> [Info] {
        let g = normalizedGroupPath(group)
        guard let l = infos[g] else { throw CheckpointError.missingGroup(file: file, group: g, available: groupPaths) }
        return l
    }

    private func info(_ name: String, _ group: String) throws -> Info {
        let g = normalizedGroupPath(group)
        let l = try list(g)
        guard let k = index[g]?[name] else { throw CheckpointError.missingTensor(file: file, group: g, name: name) }
        return l[k]
    }

    /// Reads each dataset into its destination (count(shape) floats) and checks its digest:
    /// straight from the file when it has an index, else through HDF5.
    private func readData(_ items: [(group: String, info: Info, dst: UnsafeMutablePointer<Float>)]) throws {
        if closed, let first = items.first {
            throw CheckpointError.io(file: file, reason: "dataset '/\(first.group)/\(first.info.name)': the reader was closed")
        }
        if readsDirectly {
            try readDirectly(items)
        } else {
            for (g, i, dst) in items { try readThroughHDF5(g, i, into: dst) }
        }
    }

    /// The direct path: in file order, one preadv per run of adjacent data (at most 64 MB and
    /// IOV_MAX pieces), each piece going straight to its destination. The digests of a run are
    /// computed on a second thread while the next run is read (a quarter of a cold load of `small`
    /// when done after the reads), then compared here.
    private func readDirectly(_ items: [(group: String, info: Info, dst: UnsafeMutablePointer<Float>)]) throws {
        let order = items.indices.filter { items[$0].info.count > 0 }
            .sorted { items[$0].info.offset! < items[$1].info.offset! }
        let digests = BackgroundDigests(count: items.count)
        // Wait for the hasher before anything returns: it reads the callers' memory.
        defer { digests.finish() }
        var start = 0
        while start < order.count {
            var end = start + 1
            let first = items[order[start]]
            var bytes = first.info.byteCount
            while end < order.count, end - start < 1024, bytes < 64 << 20 {
                let prev = items[order[end - 1]].info, next = items[order[end]].info
                if next.offset! != prev.offset! + prev.byteCount { break }
                bytes += next.byteCount
                end += 1
            }
            var pieces = order[start..<end].map {
                iovec(iov_base: UnsafeMutableRawPointer(items[$0].dst), iov_len: items[$0].info.byteCount)
            }
            try preadvFully(
                fd, &pieces, at: first.info.offset!, path: file,
                field: "dataset '/\(first.group)/\(first.info.name)'")
            digests.hash(
                order[start..<end].map {
                    (slot: $0, bytes: UnsafeRawBufferPointer(start: items[$0].dst, count: items[$0].info.byteCount))
                })
            start = end
        }
        for (k, item) in items.enumerated() {
            // Empty datasets were never read nor submitted: checkDigest hashes their nothing.
            try checkDigest(item.group, item.info, item.dst, computed: item.info.count > 0 ? digests.wait(k) : nil)
        }
    }

    /// `computed`: the digest already taken, else it is taken here.
    private func checkDigest(_ group: String, _ i: Info, _ dst: UnsafeMutablePointer<Float>, computed: UInt64? = nil)
        throws
    {
        let got = computed ?? XXHash64.hash(UnsafeRawBufferPointer(start: dst, count: i.byteCount))
        if got != i.digest {
            throw CheckpointError.checksumMismatch(
                file: file, field: "dataset '/\(group)/\(i.name)'", stored: i.digest, computed: got)
        }
        verified.insert(group + "/" + i.name)
    }

    /// H5Dread straight into `dst` (count(shape) floats), then the digest check.
    private func readThroughHDF5(_ group: String, _ i: Info, into dst: UnsafeMutablePointer<Float>) throws {
        H5.enter()
        let field = "dataset '/\(group)/\(i.name)'"
        if i.count > 0 {
            let d = H5Dopen2(fid, "/\(group)/\(i.name)", leffa_h5p_default())
            if d < 0 { throw CheckpointError.unreadable(file: file, field: field, reason: H5.lastError()) }
            defer { H5Dclose(d) }
            if H5Dread(d, leffa_h5t_native_float(), leffa_h5s_all(), leffa_h5s_all(), leffa_h5p_default(), dst) < 0 {
                throw CheckpointError.unreadable(file: file, field: field, reason: H5.lastError())
            }
        }
        try checkDigest(group, i, dst)
    }

    /// Collects checkpoint groups below `prefix` (recursively; `/meta` skipped).
    private static func walk(_ path: String, _ fid: hid_t, prefix: String, into infos: inout [String: [Info]]) throws {
        let where_ = prefix.isEmpty ? "group '/'" : "group '/\(prefix)'"
        let g = H5Gopen2(fid, prefix.isEmpty ? "/" : "/" + prefix, leffa_h5p_default())
        if g < 0 { throw CheckpointError.unreadable(file: path, field: where_, reason: H5.lastError()) }
        defer { H5Gclose(g) }
        let isCheckpointGroup =
            try !prefix.isEmpty && wrap(path, where_, try H5.attributeExists(g, CheckpointFormat.countAttribute))
        var datasets: [Info] = []
        for name in try wrap(path, where_, try H5.linkNames(g)) {
            if prefix.isEmpty && name == CheckpointFormat.metaGroup { continue }
            let full = prefix.isEmpty ? name : prefix + "/" + name
            let o = H5Oopen(g, name, leffa_h5p_default())
            if o < 0 { throw CheckpointError.unreadable(file: path, field: "'/\(full)'", reason: H5.lastError()) }
            let kind = H5Iget_type(o)
            H5Oclose(o)
            switch kind {
            case H5I_GROUP:
                try walk(path, fid, prefix: full, into: &infos)
            case H5I_DATASET:
                guard isCheckpointGroup else {
                    throw CheckpointError.malformed(
                        file: path, field: "dataset '/\(full)'",
                        reason: "lies in a group without the '\(CheckpointFormat.countAttribute)' attribute")
                }
                datasets.append(try datasetInfo(path, g, name, full))
            default:
                throw CheckpointError.malformed(
                    file: path, field: "'/\(full)'", reason: "neither a group nor a dataset")
            }
        }
        if isCheckpointGroup {
            let field = "attribute '\(CheckpointFormat.countAttribute)' of '/\(prefix)'"
            guard case .int64(let count)? = try? H5.readAttribute(g, CheckpointFormat.countAttribute) else {
                throw CheckpointError.malformed(file: path, field: field, reason: "not an int64")
            }
            if count != datasets.count {
                throw CheckpointError.malformed(
                    file: path, field: field, reason: "says \(count) datasets, the group holds \(datasets.count)")
            }
            infos[prefix] = datasets.sorted { utf8Less($0.name, $1.name) }
        }
    }

    /// Shape, type and digest of one dataset.
    private static func datasetInfo(_ path: String, _ g: hid_t, _ name: String, _ full: String) throws -> Info {
        let field = "dataset '/\(full)'"
        let d = H5Dopen2(g, name, leffa_h5p_default())
        if d < 0 { throw CheckpointError.unreadable(file: path, field: field, reason: H5.lastError()) }
        defer { H5Dclose(d) }
        let t = try wrap(path, field, try H5.check(H5Dget_type(d), "get the type"))
        defer { H5Tclose(t) }
        let cls = H5Tget_class(t), size = H5Tget_size(t)
        if cls != H5T_FLOAT || size != 4 || H5Tget_order(t) != H5T_ORDER_LE {
            throw CheckpointError.malformed(
                file: path, field: field,
                reason:
                    "type is \(H5.describe(cls, size: size, type: t))\(H5Tget_order(t) == H5T_ORDER_BE ? " big-endian" : ""), expected little-endian float32"
            )
        }
        let s = try wrap(path, field, try H5.check(H5Dget_space(d), "get the dataspace"))
        defer { H5Sclose(s) }
        guard let shape = try wrap(path, field, try H5.shape(ofSpace: s)) else {
            throw CheckpointError.malformed(file: path, field: field, reason: "has a null dataspace, expected a shape")
        }
        let digest = try uint64Attribute(path, d, CheckpointFormat.digestAttribute, at: "/" + full)
        return Info(name: name, shape: shape, digest: digest)
    }

    private static func uint64Attribute(_ path: String, _ obj: hid_t, _ name: String, at where_: String) throws
        -> UInt64
    {
        let field = "attribute '\(name)' of '\(where_)'"
        guard try wrap(path, field, try H5.attributeExists(obj, name)) else {
            throw CheckpointError.malformed(file: path, field: field, reason: "missing")
        }
        do {
            return try H5.readUInt64Attribute(obj, name)
        } catch let u as H5.UnsupportedAttribute {
            throw CheckpointError.malformed(
                file: path, field: field, reason: "\(u.description), expected a scalar uint64")
        } catch let f as H5Failure {
            throw CheckpointError.unreadable(file: path, field: field, reason: f.message)
        }
    }

    /// Runs `body`, turning an HDF5 failure into `.unreadable` naming the file and field.
    private static func wrap<T>(_ path: String, _ field: String, _ body: @autoclosure () throws -> T) throws -> T {
        do { return try body() } catch let f as H5Failure {
            throw CheckpointError.unreadable(file: path, field: field, reason: "\(f.operation): \(f.message)")
        }
    }
}

