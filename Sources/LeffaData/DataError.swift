// What can be wrong with a dataset, as one error type for loading and one record type for
// `check()`. Every message names the file (and the pairs-file line when there is one), the field
// of the sample it was for, what was found and what was expected, so a broken copy of VITON-HD
// or DressCode is repaired from the log alone. Not a logger: callers decide what to print.

import Foundation

/// One problem with one file. Thrown by image I/O and sample loading; listed by `check()`.
public struct DataError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    public enum Kind: String, Sendable {
        /// The file (or directory) does not exist.
        case missing
        /// It exists but cannot be read (permissions, I/O error, a directory where a file belongs).
        case unreadable
        /// It is an image/pairs file with damaged content (truncated, bad CRC, bad markers).
        case corrupt
        /// A valid file the library does not handle (not PNG/JPEG, CMYK JPEG, RGB label map).
        case unsupported
        /// Its size disagrees with the rest of the sample or with the expected size.
        case wrongSize = "wrong size"
        /// A pairs-file line that does not have the expected columns.
        case malformed
        /// A request the dataset cannot answer (index out of range, unknown split or category).
        case invalidRequest = "invalid request"
    }

    public var kind: Kind
    /// The file concerned (absolute path as the dataset resolved it).
    public var path: String
    /// Which part of a sample the file was for: "person image", "agnostic mask", … (nil for
    /// plain image I/O).
    public var field: String?
    /// 1-based line of the pairs file that led to this file, when there is one.
    public var line: Int?
    /// The pairs file `line` refers to.
    public var pairsFile: String?
    /// What was found and what was expected.
    public var reason: String
    /// How to recover, when there is an obvious way.
    public var hint: String?

    public init(
        _ kind: Kind, path: String, field: String? = nil, line: Int? = nil, pairsFile: String? = nil,
        reason: String, hint: String? = nil
    ) {
        self.kind = kind; self.path = path; self.field = field; self.line = line
        self.pairsFile = pairsFile; self.reason = reason; self.hint = hint
    }

    /// The same error attributed to a sample field (and pairs-file line). A file named by a
    /// pairs-file line that is missing or unusable gets the obvious way out as its hint.
    public func attributed(field: String?, line: Int? = nil, pairsFile: String? = nil) -> DataError {
        var e = self
        if let field { e.field = field }
        if let line {
            e.line = line; e.pairsFile = pairsFile
            if e.hint == nil && [.missing, .unreadable, .corrupt, .unsupported].contains(e.kind) {
                e.hint = "restore the file, or remove line \(line) from the pairs file"
            }
        }
        return e
    }

    public var description: String {
        var s = "'\(path)'"
        if let field { s += " (\(field))" }
        s += ": \(kind.rawValue): \(reason)"
        if let line {
            let f = pairsFile.map { ($0 as NSString).lastPathComponent } ?? "pairs file"
            s += " [line \(line) of \(f)]"
        }
        if let hint { s += "; \(hint)" }
        return s
    }

    public var errorDescription: String? { description }
}

/// One finding of `check()`: an error stops training, a warning is worth reading first.
public struct DataProblem: Equatable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable, Comparable {
        case warning, error
        public static func < (a: Self, b: Self) -> Bool { a == .warning && b == .error }
    }
    public var severity: Severity
    public var error: DataError
    /// The dataset index of the pair concerned (nil for problems of the pairs file itself or of a
    /// file shared by several pairs).
    public var pairIndex: Int?

    public init(_ severity: Severity, _ error: DataError, pairIndex: Int? = nil) {
        self.severity = severity; self.error = error; self.pairIndex = pairIndex
    }

    public var description: String { "\(severity.rawValue): \(error)" }
}

extension Array where Element == DataProblem {
    public var errors: [DataProblem] { filter { $0.severity == .error } }
    public var warnings: [DataProblem] { filter { $0.severity == .warning } }
    /// One line per problem, errors and warnings in the order found.
    public var report: String { map(\.description).joined(separator: "\n") }
}
