// The executables' log lines, through swift-log: a level per line, `--quiet` (warnings and errors
// only) and `--verbose` (debug too), and on each line the UTC time and, under MPI, the rank:
//   2026-12-05T19:31:45Z rank 0 [lowres] step 12/100  loss 0.1234 …
// The libraries log through a plain `(String) -> Void`; `LogLine.level(of:)` gives a line that
// starts with "warning:" or "error:" its level, so they need no logging dependency.
import ArgumentParser
import Foundation
import Logging
import LeffaRunFormat

/// `--quiet` / `--verbose`, shared by the commands that log.
public struct LogOptions: ParsableArguments {
    @Flag(help: "Only warnings and errors.") public var quiet = false
    @Flag(help: "Also debug lines.") public var verbose = false
    public init() {}

    public var level: Logger.Level { quiet ? .warning : verbose ? .debug : .info }

    public func validate() throws {
        if quiet && verbose { throw ValidationError("--quiet and --verbose exclude each other") }
    }

    /// A logger for `tool` writing to stderr; `rank` is printed on every line when given.
    public func logger(_ tool: String, rank: Int? = nil) -> Logger {
        let level = self.level
        var l = Logger(label: tool) { _ in StderrLogHandler(rank: rank, level: level) }
        l.logLevel = level
        return l
    }
}

/// One line per message: time, rank, the level when it is not info, the message.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let rank: Int?
    public init(rank: Int?, level: Logger.Level) { self.rank = rank; logLevel = level }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        let tag = level == .info ? "" : "\(level): "
        let who = rank.map { "rank \($0) " } ?? ""
        fputs("\(timestamp()) \(who)\(tag)\(message)\n", stderr)
    }
}

public enum LogLine {
    /// The level a library's plain line carries ("warning: …" → warning), and the text without it.
    public static func level(of line: String) -> (Logger.Level, String) {
        for (prefix, level) in [("warning: ", Logger.Level.warning), ("error: ", .error), ("debug: ", .debug)]
        where line.hasPrefix(prefix) {
            return (level, String(line.dropFirst(prefix.count)))
        }
        return (.info, line)
    }
}

extension Logger {
    /// Logs a library's plain line at the level it names.
    public func line(_ text: String) {
        let (level, rest) = LogLine.level(of: text)
        log(level: level, "\(rest)")
    }
}
