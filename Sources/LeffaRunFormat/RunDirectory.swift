// A run directory: the resolved config, the run state (RunState.swift), the heartbeat and the
// locks, one folder per stage for checkpoints, flow snapshots, validation samples, logs and
// final weights, and tensorboard/<stage>/. Every path in a run is spelled here.
import Foundation

public struct RunDirectory: Sendable {
    public let url: URL
    public init(_ path: String) { url = URL(fileURLWithPath: path).standardizedFileURL }

    public var configURL: URL { url.appendingPathComponent("config.yaml") }
    /// A path from the config: relative paths are relative to the run directory.
    public func resolve(_ path: String) -> String { path.hasPrefix("/") ? path : url.appendingPathComponent(path).path }
    public var stateURL: URL { url.appendingPathComponent("state.json") }
    public var heartbeatURL: URL { url.appendingPathComponent("heartbeat.json") }
    public func stageURL(_ stage: String) -> URL { url.appendingPathComponent("stages").appendingPathComponent(stage) }
    public func checkpointsURL(_ stage: String) -> URL { stageURL(stage).appendingPathComponent("checkpoints") }
    public func snapshotsURL(_ stage: String) -> URL { stageURL(stage).appendingPathComponent("snapshots") }
    public func logsURL(_ stage: String) -> URL { stageURL(stage).appendingPathComponent("logs") }
    /// Validation samples: `samples/step-NNNNNNNN/<pair>-<name>.png` (see Validation.swift).
    public func samplesURL(_ stage: String) -> URL { stageURL(stage).appendingPathComponent("samples") }
    /// A stage's final weights: `final.safetensors`, or its EMA's, `final-ema.safetensors`.
    public func finalWeightsURL(_ stage: String, ema: Bool = false) -> URL {
        stageURL(stage).appendingPathComponent(ema ? "final-ema.safetensors" : "final.safetensors")
    }
    /// What a stage folder holds, by name: what `stage set` moves aside when it discards a stage.
    public func stageContents(_ stage: String) -> [URL] {
        [
            checkpointsURL(stage), snapshotsURL(stage), samplesURL(stage), logsURL(stage),
            finalWeightsURL(stage), finalWeightsURL(stage, ema: true), tensorboardURL(stage)
        ]
    }
    public func metricsURL(_ stage: String) -> URL { logsURL(stage).appendingPathComponent("metrics.jsonl") }
    /// One JSON line per validation sampling (kept apart from metrics.jsonl, whose lines are steps).
    public func validationLogURL(_ stage: String) -> URL { logsURL(stage).appendingPathComponent("validation.jsonl") }
    /// A stage's TensorBoard event files: one folder per stage under one root, so
    /// `tensorboard --logdir RUN/tensorboard` shows the stages as runs.
    public func tensorboardURL(_ stage: String) -> URL {
        url.appendingPathComponent("tensorboard").appendingPathComponent(stage)
    }

    /// Creates a run from a validated config: refuses a directory that already holds a run.
    public static func create(at path: String, config: RunConfig) throws -> RunDirectory {
        let dir = RunDirectory(path)
        let fm = FileManager.default
        if fm.fileExists(atPath: dir.stateURL.path) {
            throw RunError(
                "\(dir.stateURL.path): a run already exists here; choose another --run directory or remove it")
        }
        // Initial weights are read at the first stage's start, maybe days later on a cluster: a
        // wrong path is refused now.
        if let (kind, p) = config.initFrom {
            var isDir: ObjCBool = false
            let resolved = dir.resolve(p)
            if !fm.fileExists(atPath: resolved, isDirectory: &isDir) || isDir.boolValue != (kind == "diffusers") {
                let what = kind == "diffusers" ? "a diffusers folder" : "a .safetensors file"
                throw RunError(
                    "\(config.source): field model.init.\(kind) is \(p), expected \(what); nothing is at \(resolved)"
                        + (p.hasPrefix("/") ? "" : " (relative paths are taken from the run folder)"))
            }
        }
        try makeDirectories(dir.url)
        try atomicWrite(Data(config.text.utf8), to: dir.configURL)
        for s in config.stages {
            for sub in [dir.checkpointsURL(s.name), dir.snapshotsURL(s.name), dir.logsURL(s.name)] {
                try makeDirectories(sub)
            }
        }
        var state = RunState(
            runID: "\(config.name)-\(UInt64(Date().timeIntervalSince1970))", firstStage: config.stages[0].name,
            reason: "run created from \(config.source)")
        state.configHash = configHash(config.text)
        try dir.writeState(state)
        return dir
    }

    public func readState() throws -> RunState {
        guard let data = FileManager.default.contents(atPath: stateURL.path) else {
            throw RunError(
                "\(stateURL.path): no run state; create the run with `leffa-coord init --config FILE --run \(url.path)`"
            )
        }
        let probe = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? nil
        if let v = probe?["format_version"] as? Int, v > RunState.formatVersion {
            throw RunError(
                "\(stateURL.path): field format_version is \(v), this build reads up to \(RunState.formatVersion); upgrade leffa"
            )
        }
        do { return try JSONDecoder().decode(RunState.self, from: data) } catch {
            throw RunError("\(stateURL.path): not a valid run state: \(describe(error))")
        }
    }

    public func writeState(_ state: RunState) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try atomicWrite(try enc.encode(state), to: stateURL)
    }

    /// Reads the state, applies `change` (a transition of RunState) and writes it back atomically.
    @discardableResult
    public func updateState(_ change: (inout RunState) throws -> Void) throws -> RunState {
        var s = try readState()
        try change(&s)
        try writeState(s)
        return s
    }

    public func readConfig() throws -> RunConfig { try RunConfig.load(path: configURL.path) }
}
