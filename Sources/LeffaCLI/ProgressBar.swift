// A progress bar for long commands (`prepare`, `sample`): redrawn in place on a terminal.
import Foundation
import LeffaRunFormat

/// "[prepare 32x24] ██████░░░░░░  12/16  ETA 3s" on stderr, redrawn in place (at most 10 times a second).
public final class ProgressBar {
    let name: String
    var label = "", started = Date(), last = Date.distantPast
    public init(_ name: String) { self.name = name }

    public func update(_ done: Int, _ total: Int, _ label: String) {
        if label != self.label {
            if !self.label.isEmpty { FileHandle.standardError.write(Data("\n".utf8)) }
            self.label = label; started = Date()
        }
        let now = Date()
        guard done == total || now.timeIntervalSince(last) > 0.1 else { return }
        last = now
        let width = 30, filled = total > 0 ? width * done / total : width
        let rate = now.timeIntervalSince(started) / Double(max(done, 1))
        let line =
            "\r[\(name) \(label)] " + String(repeating: "█", count: filled)
            + String(repeating: "░", count: width - filled)
            + "  \(done)/\(total)  ETA \(formatDuration(rate * Double(total - done)))  "
        FileHandle.standardError.write(Data(line.utf8))
    }

    public func finish() { if !label.isEmpty { FileHandle.standardError.write(Data("\n".utf8)) } }
}
