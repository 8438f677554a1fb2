// Per-step metrics as JSON lines (one object per optimizer step) and a live progress line with ETA.
// The same JSONL writer serves validation.jsonl (one `ValidationRecord` per validation sampling).
import Foundation
import LeffaRunFormat

public struct StepMetrics: Codable, Sendable {
    public var stage: String
    public var step: Int
    public var steps: Int
    public var loss: Double
    public var diffusion: Double
    public var leffa: Double?
    public var lr: Double
    public var gradNorm: Double
    public var stepSeconds: Double
    public var imagesPerSecond: Double
    public var time: String
    /// Seconds this step waited for the gradient all-reduce (not hidden behind backward).
    public var reduceWaitSeconds: Double = 0
    enum CodingKeys: String, CodingKey {
        case stage, step, steps, loss, diffusion, leffa, lr, time, reduceWaitSeconds = "reduce_wait_seconds"
        case gradNorm = "grad_norm", stepSeconds = "step_seconds", imagesPerSecond = "images_per_second"
    }
}

/// Appends metrics to a JSONL file (flushed each line, so a crash loses at most the current one).
public final class MetricsLog {
    let url: URL
    let fd: Int32
    public init(url: URL) throws {
        self.url = url
        fd = open(url.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 { throw RunError("\(url.path): cannot open the log (\(String(cString: strerror(errno))))") }
    }
    /// One line, written whole or not at all (a full disk truncates back): the next resume's
    /// rewind would otherwise meet a torn line in the middle of the file.
    public func append<T: Encodable>(_ m: T) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var line = try enc.encode(m)
        line.append(0x0A)
        let end = lseek(fd, 0, SEEK_END)
        let n = line.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        if n != line.count {
            let e = n < 0 ? errno : ENOSPC
            if end >= 0 { _ = ftruncate(fd, end) }
            throw RunError("\(url.path): cannot append a line (\(String(cString: strerror(e))))")
        }
    }
    deinit { close(fd) }

    /// Drops the lines of steps after `step`, and a line torn by a crash (no newline at its end),
    /// replacing the file atomically when anything goes: a stage resumed from an older checkpoint
    /// redoes those steps and must not log them twice. Lines without a step are kept. Returns how
    /// many lines with a step were dropped.
    @discardableResult
    public static func dropLines(after step: Int, in url: URL) throws -> Int {
        guard let data = FileManager.default.contents(atPath: url.path), !data.isEmpty else { return 0 }
        var lines = data.split(separator: 0x0A, omittingEmptySubsequences: false)
        let torn = lines.removeLast().count > 0 // after the last newline: empty, or a torn line
        var kept = Data(), dropped = 0
        for line in lines {
            let object = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any]
            if let s = object?["step"] as? Int, s > step {
                dropped += 1
                continue
            }
            kept += line
            kept.append(0x0A)
        }
        if dropped > 0 || torn { try atomicWrite(kept, to: url) }
        return dropped
    }
}

/// "[lowres] step 12/100  loss 0.1234 (diff 0.1200, leffa 0.3400)  lr 1.0e-04  3.2 img/s  ETA 1m20s"
public func progressLine(_ m: StepMetrics, eta: Double) -> String {
    let leffa = m.leffa.map { String(format: ", leffa %.4f", $0) } ?? ""
    return String(
        format: "[%@] step %d/%d  loss %.4f (diff %.4f%@)  lr %.1e  grad %.3f  %.2f img/s  ETA %@",
        m.stage, m.step, m.steps, m.loss, m.diffusion, leffa, m.lr, m.gradNorm, m.imagesPerSecond, formatDuration(eta))
}
