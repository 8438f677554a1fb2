// What can go wrong with a run, as the user sees it, and the exit status each executable gives it.
import Foundation

/// An error about a run, its files or its config, worded for the user (it names the file).
public struct RunError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// The run could not go on although its input is fine as far as anyone can tell: ranks lost, a
/// rank stuck, restarts used up, a loss that diverged. Exit status 3.
public struct RunFailed: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// The exit statuses of leffa-coord, leffa-worker and leffa-bench (README "Exit codes"). A
/// supervisor restarts a worker that ended with `runFailed` or a signal, never one that ended with
/// `badInput` or `usage`: the same input would fail the same way.
public enum ExitStatus {
    public static let ok: Int32 = 0
    /// Bad input or data: a config field, a data file, a weights file, a run folder that cannot be
    /// written (full, read-only). The message names the file; fix it and rerun.
    public static let badInput: Int32 = 1
    /// The command line: an unknown option, a missing argument, a value outside the listed ones.
    public static let usage: Int32 = 2
    /// The run failed for a reason that may pass (see `RunFailed`); rerunning resumes.
    public static let runFailed: Int32 = 3
    /// Stopped by Ctrl-C after a checkpoint. Other signals give 128 + the signal (SIGUSR1: 138).
    public static let interrupted: Int32 = 130

    /// The status for an error that reached the top of a command.
    public static func of(_ error: Error) -> Int32 { error is RunFailed ? runFailed : badInput }
}

/// A JSON decoding failure in the user's terms: the field's path and what was expected, not
/// Foundation's DecodingError dump.
public func describe(_ error: Error) -> String {
    func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
    }
    guard let e = error as? DecodingError else { return "\(error)" }
    switch e {
    case .keyNotFound(let key, let c):
        let at = path(c.codingPath + [key])
        return "field \(at) is missing"
    case .typeMismatch(let type, let c):
        return "field \(path(c.codingPath)) is not \(typeName(type))"
    case .valueNotFound(let type, let c):
        return "field \(path(c.codingPath)) is null, expected \(typeName(type))"
    case .dataCorrupted(let c):
        if c.codingPath.isEmpty { return "not JSON (\(c.underlyingError.map { "\($0.localizedDescription)" } ?? c.debugDescription))" }
        return "field \(path(c.codingPath)): \(c.debugDescription)"
    @unknown default:
        return "\(error)"
    }
}

private func typeName(_ t: Any.Type) -> String {
    switch t {
    case is String.Type: return "a string"
    case is Int.Type, is Int64.Type: return "an integer"
    case is Double.Type, is Float.Type: return "a number"
    case is Bool.Type: return "true or false"
    default:
        let n = "\(t)"
        return n.hasPrefix("Array") ? "a list" : n.hasPrefix("Dictionary") ? "an object" : "a \(n)"
    }
}
