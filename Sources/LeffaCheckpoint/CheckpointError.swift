// Everything that can go wrong writing or reading a checkpoint. Each message names the file, the
// field (dataset, group or meta key) when there is one, what was found, what was expected, and
// how to recover, so a failed resume is diagnosed from the log line alone.
//
// Two families matter to callers: *damage* (the file is truncated, corrupted or not a checkpoint:
// fall back to an earlier one) and everything else (a newer format, a model whose names or shapes
// differ from the file's, a bad request: falling back would not help and would hide the problem).

import Foundation

public enum CheckpointError: Error, Equatable, Sendable {
    /// A file-system operation failed (create, write, fsync, rename, list, remove).
    case io(file: String, reason: String)
    /// An HDF5 call failed while writing; `message` is HDF5's own description.
    case hdf5(file: String, operation: String, message: String)
    /// HDF5 cannot open or read the file: truncated, not HDF5, or metadata damaged. [damage]
    case unreadable(file: String, field: String, reason: String)
    /// An HDF5 file without the attributes every leffa checkpoint has. [damage]
    case notACheckpoint(file: String, reason: String)
    /// An object of the layout has the wrong kind, type or shape (e.g. a float64 dataset). [damage]
    case malformed(file: String, field: String, reason: String)
    /// Stored and recomputed XXH64 differ: the bytes changed after writing. [damage]
    case checksumMismatch(file: String, field: String, stored: UInt64, computed: UInt64)
    /// Written by a later leffa whose format this build does not know.
    case newerFormat(file: String, found: Int64, supported: Int64)
    /// The caller asked for a group the file does not have.
    case missingGroup(file: String, group: String, available: [String])
    /// The caller asked for a dataset the group does not have.
    case missingTensor(file: String, group: String, name: String)
    /// The group's names or shapes differ from the caller's layout.
    case layoutMismatch(
        file: String, group: String, missing: [String], unexpected: [String],
        wrongShapes: [WrongShape])
    /// The caller asked for a meta key the file does not have.
    case missingMeta(file: String, key: String, available: [String])
    /// The meta key holds another kind of value than asked for.
    case wrongMetaType(file: String, key: String, expected: String, actual: String)
    /// The contents given to the writer cannot be stored (bad name, bad layout, NUL in a string, …).
    case invalidContents(file: String, field: String, reason: String)
    /// The destination exists; a checkpoint is never replaced in place.
    case alreadyExists(file: String)

    /// A dataset whose shape is not the one asked for.
    public struct WrongShape: Equatable, Sendable, CustomStringConvertible {
        public var name: String
        public var expected: [Int]
        public var actual: [Int]
        public init(name: String, expected: [Int], actual: [Int]) {
            self.name = name; self.expected = expected; self.actual = actual
        }
        public var description: String { "'\(name)' is \(actual), expected \(expected)" }
    }

    /// True when the file itself is damaged, so an earlier checkpoint should be used instead.
    public var isDamage: Bool {
        switch self {
        case .unreadable, .notACheckpoint, .malformed, .checksumMismatch: return true
        default: return false
        }
    }

    /// "truncated" or "corrupted", for warnings about damaged files.
    public var damageKind: String {
        if case let .unreadable(_, _, reason) = self, reason.contains("truncated") { return "truncated" }
        return "corrupted"
    }

    /// The file the error is about.
    public var file: String {
        switch self {
        case let .io(f, _), let .hdf5(f, _, _), let .unreadable(f, _, _), let .notACheckpoint(f, _),
            let .malformed(f, _, _), let .checksumMismatch(f, _, _, _), let .newerFormat(f, _, _),
            let .missingGroup(f, _, _), let .missingTensor(f, _, _), let .layoutMismatch(f, _, _, _, _),
            let .missingMeta(f, _, _), let .wrongMetaType(f, _, _, _), let .invalidContents(f, _, _),
            let .alreadyExists(f):
            return f
        }
    }

    /// The message without the leading "checkpoint 'file': ", for warnings that name the file already.
    public var reason: String {
        switch self {
        case let .io(_, reason):
            return reason
        case let .hdf5(_, op, message):
            return "HDF5 failed to \(op): \(message)"
        case let .unreadable(_, field, reason):
            return "\(field.isEmpty ? "" : "\(field): ")\(reason)"
        case let .notACheckpoint(_, reason):
            return "not a leffa checkpoint: \(reason)"
        case let .malformed(_, field, reason):
            return "\(field): \(reason)"
        case let .checksumMismatch(_, field, stored, computed):
            return
                "\(field): checksum mismatch (stored xxh64 \(hex(stored)), computed \(hex(computed))); the file was damaged after it was written"
        case let .newerFormat(_, found, supported):
            return "written by format version \(found), this build reads up to \(supported); upgrade leffa"
        case let .missingGroup(_, group, available):
            return "no group '/\(group)' (the file has \(available.isEmpty ? "none" : few(available.map { "/" + $0 })))"
        case let .missingTensor(_, group, name):
            return "no dataset '\(name)' in group '/\(group)'"
        case let .layoutMismatch(_, group, missing, unexpected, wrong):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("\(missing.count) missing (\(few(missing)))") }
            if !unexpected.isEmpty { parts.append("\(unexpected.count) unexpected (\(few(unexpected)))") }
            if !wrong.isEmpty {
                parts.append("\(wrong.count) with another shape (\(few(wrong.map(\.description), quote: false)))")
            }
            return "group '/\(group)' does not match the model: " + parts.joined(separator: "; ")
                + "; was the checkpoint written for another model or config?"
        case let .missingMeta(_, key, available):
            return "no meta attribute '\(key)' (the file has \(available.isEmpty ? "none" : few(available)))"
        case let .wrongMetaType(_, key, expected, actual):
            return "meta attribute '\(key)' is \(actual), expected \(expected)"
        case let .invalidContents(_, field, reason):
            return "\(field): \(reason)"
        case .alreadyExists:
            return "the file already exists; a checkpoint is never overwritten (remove it or save under another step)"
        }
    }
}

extension CheckpointError: CustomStringConvertible, LocalizedError {
    public var description: String {
        file.isEmpty ? "checkpoint contents: \(reason)" : "checkpoint '\(file)': \(reason)"
    }
    public var errorDescription: String? { description }
}

/// `0x` and 16 hex digits.
func hex(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 16 - s.count) + s
}

/// The first five names, quoted, then how many more.
func few(_ names: [String], limit: Int = 5, quote: Bool = true) -> String {
    let shown = names.prefix(limit).map { quote ? "'\($0)'" : $0 }.joined(separator: ", ")
    return names.count > limit ? "\(shown), … \(names.count - limit) more" : shown
}
