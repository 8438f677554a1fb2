// The on-disk format's constants, its naming rules and its manifest checksum, shared by the writer
// and the reader. Checkpoints.md is the prose version of this file: change both together, and
// bump `version` when a file written by the new code would be misread by the old.

import Foundation

public enum CheckpointFormat {
    /// The format this build writes, and the newest it reads.
    public static let version: Int64 = 1

    /// Root attribute `leffa_format` holds `marker`: what tells a checkpoint from any HDF5 file.
    static let formatAttribute = "leffa_format"
    static let marker = "leffa-checkpoint"
    static let versionAttribute = "format_version"
    /// Root attribute: XXH64 of the manifest (names, shapes, dataset digests and meta values).
    static let checksumAttribute = "checksum_xxh64"
    /// On every checkpoint group: how many datasets it holds (also what marks it as one).
    static let countAttribute = "tensor_count"
    /// On every dataset: XXH64 of its raw little-endian float32 bytes.
    static let digestAttribute = "xxh64"
    /// The group whose attributes are the meta values.
    static let metaGroup = "meta"
}

// MARK: - Naming rules

/// Why a group path cannot be stored, or nil when it can. "/" separates nested groups.
func groupPathProblem(_ path: String) -> String? {
    if path.isEmpty { return "empty group path (the root holds no tensors)" }
    if path.utf8.contains(0) { return "group path contains a NUL character" }
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    if parts.contains(where: { $0.isEmpty }) { return "group path has an empty component ('//')" }
    if parts.contains(where: { $0 == "." || $0 == ".." }) { return "group path component '.' or '..' is not allowed" }
    if parts[0] == Substring(CheckpointFormat.metaGroup) { return "'/meta' is reserved for the meta values" }
    return nil
}

/// Why a dataset name cannot be stored verbatim, or nil when it can. Dots are fine.
func tensorNameProblem(_ name: String) -> String? {
    if name.isEmpty { return "empty dataset name" }
    if name.contains("/") { return "dataset names cannot contain '/' (HDF5's path separator)" }
    if name == "." || name == ".." { return "dataset name '\(name)' is not allowed" }
    if name.utf8.contains(0) { return "dataset name contains a NUL character" }
    return nil
}

/// Why a meta key or value cannot be stored, or nil when it can.
func metaProblem(_ key: String, _ value: CheckpointValue) -> String? {
    if key.isEmpty { return "empty meta key" }
    if key.utf8.contains(0) { return "meta key contains a NUL character" }
    if case .string(let s) = value, s.utf8.contains(0) {
        return "string contains a NUL character (HDF5 strings end at the first NUL)"
    }
    return nil
}

// MARK: - Manifest

/// What the manifest records about one dataset.
struct DatasetRecord {
    var group: String
    var name: String
    var shape: [Int]
    var digest: UInt64
}

/// XXH64 of the manifest: a byte string describing everything in the file except the float data
/// itself, which each dataset's own digest stands for. Little-endian integers; strings as a u64
/// byte length then UTF-8; sorted in UTF-8 byte order so it does not depend on write order:
///
///     'V' u64 format_version
///     per meta key:   'A' str key, u8 tag, u64 nbytes, value bytes
///                     (tag 'i' int64, 'f' float64 bits, 's' UTF-8, 'I' int64[], 'U' uint64[])
///     per group:      'G' str path, u64 tensor_count
///     per dataset:    'D' str group, str name, u64 rank, u64 dims…, u64 xxh64   (by group, then name)
///
/// Checkpoints.md repeats this with a Python version that checks a file without leffa.
func manifestChecksum(
    version: Int64, meta: [String: CheckpointValue], groups: [String: Int],
    datasets: [DatasetRecord]
) -> UInt64 {
    var out: [UInt8] = []
    func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
    func tag(_ c: Character) { out.append(c.asciiValue!) }

    tag("V"); u64(UInt64(bitPattern: version))
    for key in meta.keys.sorted(by: utf8Less) {
        tag("A"); str(key)
        switch meta[key]! {
        case .int64(let v): tag("i"); u64(8); u64(UInt64(bitPattern: v))
        case .float64(let v): tag("f"); u64(8); u64(v.bitPattern)
        case .string(let s): tag("s"); str(s)
        case .int64s(let a): tag("I"); u64(UInt64(8 * a.count)); a.forEach { u64(UInt64(bitPattern: $0)) }
        case .uint64s(let a): tag("U"); u64(UInt64(8 * a.count)); a.forEach { u64($0) }
        }
    }
    for g in groups.keys.sorted(by: utf8Less) {
        tag("G"); str(g); u64(UInt64(groups[g]!))
    }
    let sorted = datasets.sorted { a, b in a.group != b.group ? utf8Less(a.group, b.group) : utf8Less(a.name, b.name) }
    for d in sorted {
        tag("D"); str(d.group); str(d.name)
        u64(UInt64(d.shape.count)); d.shape.forEach { u64(UInt64($0)) }
        u64(d.digest)
    }
    return XXHash64.hash(out)
}
