// heartbeat.json: rank 0's sign of life, rewritten after every step and from inside long phases.
// It names where the worker runs (host, pid, scheduler job id) because the one reading it — the
// coordinator, `stage status` on a login node — may be on another machine, where the pid means
// nothing. Liveness itself is decided by the run lock (RunLock.swift); the heartbeat adds the age.
import Foundation

public struct Heartbeat: Codable, Sendable {
    public var stage: String
    public var step: Int
    public var steps: Int
    public var ranks: Int?
    public var phase: String?
    public var pid: Int
    /// The host rank 0 runs on (gethostname).
    public var host: String?
    /// The scheduler's job id (SLURM_JOB_ID, PBS_JOBID, LSB_JOBID), when there is one.
    public var jobID: String?
    public var time: String?
    public var unixTime: Double
    enum CodingKeys: String, CodingKey {
        case stage, step, steps, ranks, phase, pid, host, jobID = "job_id", time, unixTime = "unix_time"
    }

    public init(stage: String, step: Int, steps: Int, ranks: Int, phase: String) {
        self.stage = stage; self.step = step; self.steps = steps; self.ranks = ranks; self.phase = phase
        pid = Int(getpid()); host = Heartbeat.hostName; jobID = Heartbeat.schedulerJobID()
        time = timestamp(); unixTime = Date().timeIntervalSince1970
    }

    public static func read(_ run: RunDirectory) -> Heartbeat? {
        guard let d = FileManager.default.contents(atPath: run.heartbeatURL.path) else { return nil }
        return try? JSONDecoder().decode(Heartbeat.self, from: d)
    }
    public func write(_ run: RunDirectory) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try atomicWrite(try enc.encode(self), to: run.heartbeatURL)
    }
    public var age: Double { Date().timeIntervalSince1970 - unixTime }
    /// "pid 123 on node7 (job 4567)".
    public var whereabouts: String { Heartbeat.whereabouts(pid: pid, host: host, jobID: jobID) }
    /// The one wording of where a process runs, for heartbeats, lock holders and `stage status`.
    public static func whereabouts(pid: Int, host: String?, jobID: String?) -> String {
        "pid \(pid)" + (host.map { " on \($0)" } ?? "") + (jobID.map { " (job \($0))" } ?? "")
    }

    public static var hostName: String {
        var buf = [CChar](repeating: 0, count: 256)
        return gethostname(&buf, buf.count) == 0 ? String(cString: buf) : "unknown-host"
    }
    public static func schedulerJobID(_ env: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        ["SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID"].lazy.compactMap { env[$0] }.first { !$0.isEmpty }
    }
}
