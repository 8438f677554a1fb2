// A progress bar for long commands (`prepare`, `sample`): redrawn in place on a terminal.
import Foundation
import LeffaRunFormat

/// "[prepare 32x24] ██████░░░░░░  12/16  ETA 3s" on stderr: redrawn in place (at most 10 times a
/// second) on a terminal; into a file or pipe, a plain line at each tenth of the way (a log keeps
/// no carriage returns).
public final class ProgressBar {
    let name: String
    var label = "", started = Date(), last = Date.distantPast, lastTenth = -1
    let terminal = isatty(STDERR_FILENO) != 0
    public init(_ name: String) { self.name = name }

    public func update(_ done: Int, _ total: Int, _ label: String) {
        if label != self.label {
            if !self.label.isEmpty && terminal { fputs("\n", stderr) }
            self.label = label; started = Date(); lastTenth = -1
        }
        let now = Date()
        let rate = now.timeIntervalSince(started) / Double(max(done, 1))
        let eta = "ETA \(formatDuration(rate * Double(total - done)))"
        guard terminal else {
            let tenth = total > 0 ? 10 * done / total : 10
            if tenth > lastTenth {
                lastTenth = tenth
                fputs("\(timestamp()) [\(name) \(label)] \(done)/\(total) (\(tenth * 10) %)  \(eta)\n", stderr)
            }
            return
        }
        guard done == total || now.timeIntervalSince(last) > 0.1 else { return }
        last = now
        let width = 30, filled = total > 0 ? width * done / total : width
        let line =
            "\r[\(name) \(label)] " + String(repeating: "█", count: filled)
            + String(repeating: "░", count: width - filled) + "  \(done)/\(total)  \(eta)  "
        fputs(line, stderr)
    }

    public func finish() { if !label.isEmpty && terminal { fputs("\n", stderr) } }
}
