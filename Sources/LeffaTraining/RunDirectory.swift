// A run directory: the resolved config, the run state (current stage, status, history of
// transitions) and one folder per stage for checkpoints, flow snapshots, validation samples, logs
// and final weights.
// The state file is small JSON, replaced atomically, so a crash never leaves it half written.
import Foundation

public struct RunState: Codable, Sendable {
    public static let formatVersion = 1
    public enum Status: String, Codable, Sendable { case ready, running, done, failed }
    public struct Transition: Codable, Sendable {
        public var time: String, from: String?, to: String, reason: String
    }
    public var formatVersion = RunState.formatVersion
    public var runID: String
    public var stage: String            // current stage name
    public var status: Status
    public var completedStages: [String] = []
    public var history: [Transition] = []

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", runID = "run_id", stage, status, completedStages = "completed_stages", history
    }
}

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
    public func finalWeightsURL(_ stage: String) -> URL { stageURL(stage).appendingPathComponent("final.safetensors") }
    public func metricsURL(_ stage: String) -> URL { logsURL(stage).appendingPathComponent("metrics.jsonl") }
    /// One JSON line per validation sampling (kept apart from metrics.jsonl, whose lines are steps).
    public func validationLogURL(_ stage: String) -> URL { logsURL(stage).appendingPathComponent("validation.jsonl") }

    /// Creates a run from a validated config: refuses a directory that already holds a run.
    public static func create(at path: String, config: RunConfig) throws -> RunDirectory {
        let dir = RunDirectory(path)
        let fm = FileManager.default
        if fm.fileExists(atPath: dir.stateURL.path) {
            throw RunError("\(dir.stateURL.path): a run already exists here; choose another --run directory or remove it")
        }
        try fm.createDirectory(at: dir.url, withIntermediateDirectories: true)
        try atomicWrite(Data(config.text.utf8), to: dir.configURL)
        for s in config.stages {
            for sub in [dir.checkpointsURL(s.name), dir.snapshotsURL(s.name), dir.logsURL(s.name)] {
                try fm.createDirectory(at: sub, withIntermediateDirectories: true)
            }
        }
        var state = RunState(runID: "\(config.name)-\(UInt64(Date().timeIntervalSince1970))", stage: config.stages[0].name, status: .ready)
        state.history.append(.init(time: timestamp(), from: nil, to: config.stages[0].name, reason: "run created from \(config.source)"))
        try dir.writeState(state)
        return dir
    }

    public func readState() throws -> RunState {
        guard let data = FileManager.default.contents(atPath: stateURL.path) else {
            throw RunError("\(stateURL.path): no run state; create the run with `leffa-coord init --config FILE --run \(url.path)`")
        }
        let probe = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? nil
        if let v = probe?["format_version"] as? Int, v > RunState.formatVersion {
            throw RunError("\(stateURL.path): field format_version is \(v), this build reads up to \(RunState.formatVersion); upgrade leffa")
        }
        do { return try JSONDecoder().decode(RunState.self, from: data) } catch {
            throw RunError("\(stateURL.path): not a valid run state (\(error))")
        }
    }

    public func writeState(_ state: RunState) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try atomicWrite(try enc.encode(state), to: stateURL)
    }

    public func readConfig() throws -> RunConfig { try RunConfig.load(path: configURL.path) }
}

public struct RunError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

func timestamp() -> String { ISO8601DateFormatter().string(from: Date()) }

/// Writes to a temporary name in the same folder, fsyncs, renames: readers see the old or the new file.
public func atomicWrite(_ data: Data, to url: URL) throws {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    guard FileManager.default.createFile(atPath: tmp.path, contents: data) else {
        throw RunError("\(tmp.path): cannot write (\(String(cString: strerror(errno))))")
    }
    let fd = open(tmp.path, O_RDONLY)
    if fd >= 0 { fsync(fd); close(fd) }
    if rename(tmp.path, url.path) != 0 {
        let why = String(cString: strerror(errno))
        unlink(tmp.path)
        throw RunError("\(url.path): cannot replace (\(why))")
    }
}
