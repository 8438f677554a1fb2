// What a checkpoint holds, in memory: named groups of float32 tensors and a set of meta values.
// Generic on purpose: the trainer decides which groups and keys go in (see `CheckpointNames` for
// the ones it uses); this layer only stores, checks and returns them. The on-disk layout is in
// Checkpoints.md; the writer is CheckpointWriter.swift, the reader CheckpointReader.swift.

import LeffaTensor

/// One meta value: stored as an HDF5 attribute of `/meta` (Checkpoints.md says which type each
/// becomes, so h5py reads them as plain Python values).
public enum CheckpointValue: Sendable, CustomStringConvertible {
    case int64(Int64)
    case float64(Double)
    /// UTF-8 text of any length, multi-line allowed; no NUL characters.
    case string(String)
    case int64s([Int64])
    case uint64s([UInt64])

    /// The kind, as error messages and Checkpoints.md name it.
    public var kind: String {
        switch self {
        case .int64: return "int64"
        case .float64: return "float64"
        case .string: return "string"
        case .int64s: return "int64 array"
        case .uint64s: return "uint64 array"
        }
    }

    public var description: String {
        switch self {
        case .int64(let v): return "\(v)"
        case .float64(let v): return "\(v)"
        case .string(let s): return s.debugDescription
        case .int64s(let v): return "\(v)"
        case .uint64s(let v): return "\(v)"
        }
    }
}

extension CheckpointValue: Equatable {
    /// Bit-exact: a float64 equals itself even when it is NaN, and 0.0 differs from -0.0.
    public static func == (a: CheckpointValue, b: CheckpointValue) -> Bool {
        switch (a, b) {
        case let (.int64(x), .int64(y)): return x == y
        case let (.float64(x), .float64(y)): return x.bitPattern == y.bitPattern
        case let (.string(x), .string(y)): return Array(x.utf8) == Array(y.utf8)
        case let (.int64s(x), .int64s(y)): return x == y
        case let (.uint64s(x), .uint64s(y)): return x == y
        default: return false
        }
    }
}

/// Where one named tensor lives inside a flat float block: `count(shape)` floats from `offset`.
/// The trainer's ParameterSet gives one per parameter (name, offset, shape).
public struct FlatEntry: Equatable, Sendable {
    public var name: String
    public var offset: Int
    public var shape: [Int]
    public init(name: String, offset: Int, shape: [Int]) {
        self.name = name; self.offset = offset; self.shape = shape
    }
    public var count: Int { shape.reduce(1, *) }
}

/// Typed access to meta values with errors that name the file and the key.
public protocol CheckpointMetaReading {
    var meta: [String: CheckpointValue] { get }
    /// The file the values came from ("" when built in memory), for error messages.
    var file: String { get }
}

extension CheckpointMetaReading {
    private func value(_ key: String) throws -> CheckpointValue {
        guard let v = meta[key] else {
            throw CheckpointError.missingMeta(file: file, key: key, available: meta.keys.sorted(by: utf8Less))
        }
        return v
    }
    private func mismatch(_ key: String, _ expected: String, _ v: CheckpointValue) -> CheckpointError {
        .wrongMetaType(file: file, key: key, expected: expected, actual: "\(v.kind) \(v)")
    }

    public func int64(_ key: String) throws -> Int64 {
        let v = try value(key)
        if case .int64(let x) = v { return x }
        throw mismatch(key, "int64", v)
    }
    public func float64(_ key: String) throws -> Double {
        let v = try value(key)
        if case .float64(let x) = v { return x }
        throw mismatch(key, "float64", v)
    }
    public func string(_ key: String) throws -> String {
        let v = try value(key)
        if case .string(let x) = v { return x }
        throw mismatch(key, "string", v)
    }
    public func int64s(_ key: String) throws -> [Int64] {
        let v = try value(key)
        if case .int64s(let x) = v { return x }
        throw mismatch(key, "int64 array", v)
    }
    public func uint64s(_ key: String) throws -> [UInt64] {
        let v = try value(key)
        if case .uint64s(let x) = v { return x }
        throw mismatch(key, "uint64 array", v)
    }
}

/// Groups of named float32 tensors plus meta values: what `CheckpointDirectory.save` writes and
/// `readAll` returns. Tensors are referenced, not copied: a group made from a flat block holds
/// views into it, and its values are read when the file is written.
public struct CheckpointContents: CheckpointMetaReading {
    public var meta: [String: CheckpointValue]
    /// Group path ("params", "optimizer/m", …) → tensors in the order given.
    public private(set) var groups: [String: [(name: String, tensor: Tensor)]] = [:]
    public var file: String

    public init(meta: [String: CheckpointValue] = [:], file: String = "") {
        self.meta = meta
        self.file = file
    }

    /// Sets (or replaces) a group. Names are kept verbatim (dots included); the writer checks them.
    public mutating func setGroup(_ path: String, _ tensors: [(String, Tensor)]) {
        groups[normalizedGroupPath(path)] = tensors.map { (name: $0.0, tensor: $0.1) }
    }

    /// Sets a group from one flat block and a table of (name, offset, shape): each entry becomes a
    /// view into `flat`, nothing is copied. Throws when an entry falls outside the block or a name
    /// repeats.
    public mutating func setGroup(_ path: String, flat: Tensor, layout: [FlatEntry]) throws {
        let p = normalizedGroupPath(path)
        var seen = Set<String>()
        var views: [(name: String, tensor: Tensor)] = []
        views.reserveCapacity(layout.count)
        for e in layout {
            let field = "dataset '/\(p)/\(e.name)'"
            if !seen.insert(e.name).inserted {
                throw CheckpointError.invalidContents(
                    file: file, field: field, reason: "name appears twice in the layout")
            }
            if e.shape.contains(where: { $0 < 0 }) || e.offset < 0 || e.offset + e.count > flat.count {
                throw CheckpointError.invalidContents(
                    file: file, field: field,
                    reason:
                        "layout entry (offset \(e.offset), shape \(e.shape)) does not fit the flat block of \(flat.count) floats"
                )
            }
            views.append(
                (
                    e.name,
                    Tensor(shape: e.shape, storage: Storage(viewOf: flat.storage, offset: e.offset, count: e.count))
                ))
        }
        groups[p] = views
    }

    /// Group paths in byte order.
    public var groupPaths: [String] { groups.keys.sorted(by: utf8Less) }

    public func group(_ path: String) throws -> [(name: String, tensor: Tensor)] {
        let p = normalizedGroupPath(path)
        guard let g = groups[p] else { throw CheckpointError.missingGroup(file: file, group: p, available: groupPaths) }
        return g
    }

    public func tensor(_ name: String, in path: String) throws -> Tensor {
        let p = normalizedGroupPath(path)
        guard let t = try group(p).first(where: { $0.name == name })?.tensor else {
            throw CheckpointError.missingTensor(file: file, group: p, name: name)
        }
        return t
    }
}

/// "/optimizer/m/" → "optimizer/m".
func normalizedGroupPath(_ path: String) -> String {
    var s = Substring(path)
    while s.hasPrefix("/") { s = s.dropFirst() }
    while s.hasSuffix("/") { s = s.dropLast() }
    return String(s)
}

/// Byte order of the UTF-8 encodings (= code point order, Python's `sorted` on str): the order
/// of the checksum manifest, independent of locale and Unicode normalisation.
func utf8Less(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
