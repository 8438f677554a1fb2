// Times as a run writes them: one stamp for history entries, heartbeats and log lines, and one
// way to say a duration (ETAs in progress lines and bars).
import Foundation

/// Now, in ISO 8601 UTC ("2026-12-05T14:03:00Z"): the time of history entries, heartbeats, log lines.
public func timestamp(_ date: Date = Date()) -> String { ISO8601DateFormatter().string(from: date) }

/// "45s", "3m7s", "2h5m"; "?" when unknown.
public func formatDuration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "?" }
    let t = Int(s.rounded())
    return t >= 3600 ? "\(t / 3600)h\((t % 3600) / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
}
