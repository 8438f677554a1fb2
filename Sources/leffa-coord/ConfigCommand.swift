// `leffa-coord config`: the effective config of a run (or of a config file), every value the
// parser used with defaults marked, and the confirmation of a hand edit of RUN/config.yaml.
import ArgumentParser
import Foundation
import LeffaCLI
import LeffaRunFormat

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print the effective config (defaults included), or confirm an edit of RUN/config.yaml.")
    @Option(name: .customLong("run"), help: "The run directory.") var runPath: String?
    @Option(help: "A config file instead of a run.") var config: String?
    @Flag(help: "Confirm a hand edit of RUN/config.yaml (validated first; recorded in the history).") var acceptEdit = false
    @Flag(help: "Print JSON: a list of {key, value, default}.") var json = false

    func validate() throws {
        guard (runPath == nil) != (config == nil) else { throw ValidationError("give --run or --config (one of them)") }
        if acceptEdit && runPath == nil { throw ValidationError("--accept-edit needs --run") }
    }

    func run() throws {
        do {
            let cfg: RunConfig
            if let runPath {
                let dir = RunDirectory(runPath)
                cfg = try dir.readConfig()
                if acceptEdit {
                    print(try dir.acceptConfigEdit())
                    return
                }
                // Say so when the file differs from what the run recorded (the worker refuses it).
                if (try? dir.checkConfigUnedited(cfg)) == nil {
                    fputs(
                        "leffa-coord: note: \(dir.configURL.path) was edited since the run recorded it; confirm with --accept-edit\n",
                        stderr)
                }
            } else {
                cfg = try RunConfig.load(path: config!)
            }
            if json {
                struct Row: Encodable { var key: String, value: String, `default`: Bool }
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(cfg.settings.map { Row(key: $0.key, value: $0.value, default: !$0.fromFile) }), as: UTF8.self))
                return
            }
            print("# effective config of \(cfg.source) (\(cfg.settings.filter { !$0.fromFile }.count) defaults marked)")
            let width = min(48, cfg.settings.map(\.key.count).max() ?? 0)
            for s in cfg.settings {
                let pad = String(repeating: " ", count: max(0, width - s.key.count))
                print("\(s.key):\(pad) \(s.value)\(s.fromFile ? "" : "   # default")")
            }
        } catch { throw userError(error) }
    }
}
