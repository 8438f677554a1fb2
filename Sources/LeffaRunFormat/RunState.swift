// state.json: where a run stands (current stage, status, completed stages) and the history of
// every transition with its time and reason. Every change goes through one of the transitions
// below, so the trainer, `stage advance`/`set` and the supervisor record moves the same way.
import Foundation

public struct RunState: Codable, Sendable {
    public static let formatVersion = 1
    public enum Status: String, Codable, Sendable { case ready, running, done, failed }
    public struct Transition: Codable, Sendable {
        public var time: String, from: String?, to: String, reason: String
        /// A transition happening now.
        public init(from: String?, to: String, reason: String) {
            time = timestamp(); self.from = from; self.to = to; self.reason = reason
        }
    }
    public var formatVersion = RunState.formatVersion
    public var runID: String
    public var stage: String // current stage name
    public var status: Status
    public var completedStages: [String] = []
    public var history: [Transition] = []
    /// xxh64 of RUN/config.yaml as init wrote it or as `leffa-coord config --accept-edit` last
    /// confirmed it: a hand edit is noticed, never used silently (ConfigEdits.swift). nil in runs
    /// made before it existed.
    public var configHash: String? = nil

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", runID = "run_id", stage, status, completedStages = "completed_stages",
            history, configHash = "config_hash"
    }

    /// A new run at its first stage.
    public init(runID: String, firstStage: String, reason: String) {
        self.runID = runID; stage = firstStage; status = .ready
        history = [Transition(from: nil, to: firstStage, reason: reason)]
    }

    // MARK: Transitions

    /// The status changes within the current stage; a reason (a failure, a stop) goes into the history.
    public mutating func setStatus(_ new: Status, reason: String? = nil) {
        status = new
        if let reason { note("\(new.rawValue): \(reason)") }
    }

    /// Records an event of the current stage that changes no field (e.g. an elastic relaunch).
    public mutating func note(_ reason: String) {
        history.append(Transition(from: stage, to: stage, reason: reason))
    }

    /// `finished` is complete: the run moves to `next` (ready to train) or, after the last stage, is done.
    public mutating func complete(_ finished: String, next: String?, reason: String) {
        if !completedStages.contains(finished) { completedStages.append(finished) }
        history.append(Transition(from: finished, to: next ?? "done", reason: reason))
        if let next { stage = next; status = .ready } else { status = .done }
    }

    /// Goes to stage `target` (`stage set`); `uncompleted` lose their completion.
    public mutating func move(to target: String, uncompleting uncompleted: Set<String>, reason: String) {
        let from = status == .done ? "done" : stage
        completedStages.removeAll { uncompleted.contains($0) }
        stage = target
        status = .ready
        history.append(Transition(from: from, to: target, reason: reason))
    }
}
