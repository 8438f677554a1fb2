// `leffa-coord stage status|history|advance|set`: where a run stands, how it got there, and
// deliberate moves between stages. Argument parsing only; the logic is LeffaRun.StageControl.
import ArgumentParser
import LeffaCLI
import Foundation
import LeffaRunFormat
import LeffaRun

struct Stage: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect and move a run's stages.",
        subcommands: [Status.self, History.self, Advance.self, SetStage.self])

    struct RunOption: ParsableArguments {
        @Option(name: .customLong("run"), help: "The run directory.") var path: String
        @Flag(help: "Print JSON (for scripts).") var json = false
        var dir: RunDirectory { RunDirectory(path) }
    }

    static func printJSON<T: Encodable>(_ value: T) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try enc.encode(value), as: UTF8.self))
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Current stage, status, checkpoints per stage, heartbeat age.")
        @OptionGroup var opts: RunOption
        func run() throws {
            do {
                let r = try StageControl.status(opts.dir)
                if opts.json { try Stage.printJSON(r) } else { print(r.text) }
            } catch { throw userError(error) }
        }
    }

    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every stage transition with its time and reason.")
        @OptionGroup var opts: RunOption
        func run() throws {
            do {
                let s = try opts.dir.readState()
                if opts.json { try Stage.printJSON(s.history); return }
                for t in s.history { print("\(t.time)  \(t.from ?? "-") → \(t.to)  \(t.reason)") }
            } catch { throw userError(error) }
        }
    }

    struct Advance: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End the current stage at its newest checkpoint (its final weights) and move to the next stage.")
        @OptionGroup var opts: RunOption
        @Option(help: "Why (recorded in the history).") var reason: String?
        func run() throws {
            do {
                let s = try StageControl.advance(opts.dir, reason: reason) { print($0) }
                if opts.json { try Stage.printJSON(s) }
            } catch { throw userError(error) }
        }
    }

    struct SetStage: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Move the run to a named stage (needs --yes when progress would be discarded).")
        @Argument(help: "The stage to move to.") var name: String
        @OptionGroup var opts: RunOption
        @Option(help: "Why (recorded in the history).") var reason: String?
        @Flag(help: "Confirm discarding progress (later stages' files are moved aside, not deleted).") var yes = false
        func run() throws {
            do {
                let s = try StageControl.set(opts.dir, to: name, confirmed: yes, reason: reason) { print($0) }
                if opts.json {
                    try Stage.printJSON(s)
                } else {
                    print("run is at stage \(s.stage) (\(s.status.rawValue))")
                }
            } catch { throw userError(error) }
        }
    }
}
