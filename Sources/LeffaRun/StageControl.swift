// Where a run stands and deliberate moves between its stages: `status` (current stage, completed
// stages, checkpoints per stage, heartbeat age), `advance` (end the current stage at its newest
// checkpoint) and `set` (go to a named stage). Every move appends a transition with its time and
// reason to state.json. Not the training itself (the worker) and not launching it (Supervisor).
import Foundation
import LeffaCheckpoint
import LeffaRunFormat

public struct StageInfo: Codable, Sendable {
    public var name: String
    public var steps: Int
    public var completed: Bool
    public var checkpoints: [Int]
    public var latestCheckpoint: Int?
    public var hasFinalWeights: Bool
    enum CodingKeys: String, CodingKey {
        case name, steps, completed, checkpoints, latestCheckpoint = "latest_checkpoint", hasFinalWeights =
            "has_final_weights"
    }
}

public struct StageReport: Codable, Sendable {
    public var run: String
    public var runID: String
    public var stage: String
    public var status: String
    public var completedStages: [String]
    public var stages: [StageInfo]
    public var heartbeat: HeartbeatInfo?
    /// Whether a coordinator or worker is working on the run now (RunLock.swift), and why.
    public var live: Bool
    public var liveness: String
    public var history: [RunState.Transition]
    public struct HeartbeatInfo: Codable, Sendable {
        public var stage: String, step: Int, steps: Int, pid: Int, host: String?, jobID: String?, ageSeconds: Double
        enum CodingKeys: String, CodingKey {
            case stage, step, steps, pid, host, jobID = "job_id", ageSeconds = "age_seconds"
        }
    }
    enum CodingKeys: String, CodingKey {
        case run, runID = "run_id", stage, status, completedStages = "completed_stages", stages, heartbeat, live,
            liveness, history
    }

    /// Human-readable summary (the non-JSON `stage status`).
    public var text: String {
        let stale = status == "running" && !live
        var lines = [
            "run \(run) (\(runID))",
            "stage \(stage): \(status)\(stale ? " (no live worker: it stopped or died; `leffa-coord run` resumes)" : "")"
        ]
        for s in stages {
            let mark = s.completed ? "done" : s.name == stage ? "current" : "pending"
            let ck =
                s.latestCheckpoint.map { "latest checkpoint step \($0)/\(s.steps)" }
                ?? "no checkpoints (of \(s.steps) steps)"
            lines.append(
                "  \(s.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(mark.padding(toLength: 8, withPad: " ", startingAt: 0)) \(ck)\(s.hasFinalWeights ? ", final weights" : "")"
            )
        }
        if let h = heartbeat {
            let whereabouts = Heartbeat.whereabouts(pid: h.pid, host: h.host, jobID: h.jobID)
            lines.append(
                String(
                    format: "heartbeat: %@ step %d/%d, %@, %.0f s ago", h.stage, h.step, h.steps, whereabouts,
                    h.ageSeconds))
        } else {
            lines.append("heartbeat: none")
        }
        lines.append(live ? "live: \(liveness)" : "live: no" + (liveness.isEmpty ? "" : " (\(liveness))"))
        return lines.joined(separator: "\n")
    }
}

public enum StageControl {
    public static func status(_ run: RunDirectory) throws -> StageReport {
        let state = try run.readState(), config = try run.readConfig()
        let infos = try config.stages.map { s -> StageInfo in
            let steps = try checkpointSteps(run, s.name)
            return StageInfo(
                name: s.name, steps: s.steps, completed: state.completedStages.contains(s.name), checkpoints: steps,
                latestCheckpoint: steps.last,
                hasFinalWeights: FileManager.default.fileExists(atPath: run.finalWeightsURL(s.name).path))
        }
        let hb = Heartbeat.read(run).map {
            StageReport.HeartbeatInfo(
                stage: $0.stage, step: $0.step, steps: $0.steps, pid: $0.pid, host: $0.host, jobID: $0.jobID,
                ageSeconds: $0.age)
        }
        let live = Liveness.of(run)
        return StageReport(
            run: run.url.path, runID: state.runID, stage: state.stage, status: state.status.rawValue,
            completedStages: state.completedStages, stages: infos, heartbeat: hb, live: live.live, liveness: live.why,
            history: state.history)
    }

    /// Steps of the checkpoints present in a stage (not verified; `advance` verifies).
    public static func checkpointSteps(_ run: RunDirectory, _ stage: String) throws -> [Int] {
        let url = run.checkpointsURL(stage)
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        return try CheckpointDirectory(url, keepLast: 0).checkpoints().map(\.step)
    }

    /// Refuses to change the state while the run is live, from any node (it would overwrite
    /// state.json under the worker). Not even --yes overrides a held lock: its holder is alive.
    static func checkNoWorker(_ run: RunDirectory) throws {
        let l = Liveness.of(run)
        guard l.live else { return }
        throw RunError(
            "\(run.url.path): the run is live: \(l.why); stop it first (Ctrl-C in `leffa-coord run`, or scancel the job), then retry"
        )
    }

    /// Ends the current stage at its newest valid checkpoint: writes the stage's final weights from
    /// it, marks the stage completed and moves to the next stage (which then starts from those
    /// weights with a fresh optimizer), or marks the run done after the last stage.
    @discardableResult
    public static func advance(_ run: RunDirectory, reason: String? = nil, log: (String) -> Void = { _ in }) throws
        -> RunState
    {
        try checkNoWorker(run)
        var state = try run.readState()
        let config = try run.readConfig()
        guard state.status != .done else {
            throw RunError(
                "\(run.stateURL.path): the run is complete; nothing to advance (use `stage set NAME --yes` to go back)")
        }
        guard let i = config.stages.firstIndex(where: { $0.name == state.stage }) else {
            throw RunError(
                "\(run.stateURL.path): field stage is \(state.stage), expected one of \(config.stages.map(\.name))")
        }
        let stage = config.stages[i]
        let step = try StageWeights.writeFinal(run: run, config: config, stage: stage.name, log: log)
        let next = i + 1 < config.stages.count ? config.stages[i + 1].name : nil
        let why = reason ?? "stage advance"
        state.complete(
            stage.name, next: next, reason: "\(why): ended \(stage.name) at checkpoint step \(step) of \(stage.steps)")
        try run.writeState(state)
        log(
            "stage \(stage.name) ended at step \(step)/\(stage.steps); final weights in \(run.finalWeightsURL(stage.name).path); "
                + (next.map { "next: \($0)" } ?? "the run is done"))
        return state
    }

    /// What moving to `target` would throw away, in words (empty when nothing).
    public static func discards(_ run: RunDirectory, to target: String) throws -> [String] {
        let state = try run.readState(), config = try run.readConfig()
        guard let t = config.stages.firstIndex(where: { $0.name == target }) else {
            throw RunError("stage set: no stage named \(target); the config's stages are \(config.stages.map(\.name))")
        }
        var out: [String] = []
        for (j, s) in config.stages.enumerated() where j > t {
            if state.completedStages.contains(s.name) {
                out.append("completed stage \(s.name) (its final weights and checkpoints are moved aside)")
            } else if let last = try checkpointSteps(run, s.name).last {
                out.append("stage \(s.name)'s checkpoints up to step \(last) (moved aside)")
            }
        }
        if state.completedStages.contains(target) {
            out.append("stage \(target) is completed and becomes current again (it resumes from its newest checkpoint)")
        }
        let cur = state.stage
        if cur != target, !state.completedStages.contains(cur),
            config.stages.firstIndex(where: { $0.name == cur }).map({ $0 < t }) == true,
            let last = try checkpointSteps(run, cur).last,
            let steps = config.stages.first(where: { $0.name == cur })?.steps, last < steps
        {
            out.append("stage \(cur) is left unfinished at checkpoint step \(last) of \(steps)")
        }
        return out
    }

    /// Moves the run to stage `target`. Stages after it lose their completion; their files are
    /// moved to `stages/NAME/discarded-TIME/`, never deleted. Moving forward past an unfinished
    /// stage needs the previous stage's final weights (the target starts from them). Anything
    /// discarded needs `confirmed` (--yes).
    @discardableResult
    public static func set(
        _ run: RunDirectory, to target: String, confirmed: Bool, reason: String? = nil, log: (String) -> Void = { _ in }
    ) throws -> RunState {
        try checkNoWorker(run)
        var state = try run.readState()
        let config = try run.readConfig()
        let lost = try discards(run, to: target)
        let t = config.stages.firstIndex(where: { $0.name == target })!
        if !lost.isEmpty && !confirmed {
            throw RunError(
                "stage set \(target) would discard progress:\n  - " + lost.joined(separator: "\n  - ")
                    + "\npass --yes to do it anyway")
        }
        let targetHasCheckpoints = !(try checkpointSteps(run, target)).isEmpty
        if t > 0 && !state.completedStages.contains(target) && !targetHasCheckpoints {
            let prev = config.stages[t - 1].name
            guard FileManager.default.fileExists(atPath: run.finalWeightsURL(prev).path) else {
                throw RunError(
                    "\(run.finalWeightsURL(prev).path): stage \(target) starts from stage \(prev)'s final weights, which do not exist; `stage advance` \(prev) first"
                )
            }
        }
        let stamp = timestamp().replacingOccurrences(of: ":", with: "")
        for (j, s) in config.stages.enumerated() where j > t {
            let hasCheckpoints = !(try checkpointSteps(run, s.name)).isEmpty
            let had = state.completedStages.contains(s.name) || hasCheckpoints
            if had {
                try moveAside(run, s.name, stamp: stamp);
                log("moved stage \(s.name)'s files to \(run.stageURL(s.name).path)/discarded-\(stamp)")
            }
        }
        let uncompleted = Set(
            state.completedStages.filter { name in
                config.stages.firstIndex(where: { $0.name == name }).map { $0 >= t } ?? true
            })
        state.move(
            to: target, uncompleting: uncompleted,
            reason: (reason ?? "stage set") + (lost.isEmpty ? "" : "; discarded: " + lost.joined(separator: "; ")))
        try run.writeState(state)
        return state
    }

    /// Moves a stage's checkpoints, logs, snapshots, validation samples, final weights and
    /// TensorBoard events (RUN/tensorboard/<stage>, moved as `tensorboard`) into a discarded-STAMP folder.
    static func moveAside(_ run: RunDirectory, _ stage: String, stamp: String) throws {
        let fm = FileManager.default, dir = run.stageURL(stage)
        let dest = dir.appendingPathComponent("discarded-\(stamp)")
        try fm.createDirectory(at: dest, withIntermediateDirectories: true)
        for src in run.stageContents(stage) where fm.fileExists(atPath: src.path) {
            let name = src == run.tensorboardURL(stage) ? "tensorboard" : src.lastPathComponent
            try fm.moveItem(at: src, to: dest.appendingPathComponent(name))
        }
        for sub in [run.checkpointsURL(stage), run.snapshotsURL(stage), run.logsURL(stage)] {
            try fm.createDirectory(at: sub, withIntermediateDirectories: true)
        }
    }
}
