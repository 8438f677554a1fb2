// Who is working on a run, decided from any node that sees the run folder. Two advisory locks
// (flock) in the run folder: `coordinator.lock`, held by `leffa-coord run` while it supervises, and
// `worker.lock`, held by rank 0 of a worker job for its whole life. The kernel drops a lock when
// its process dies, however it dies, so a lock can never be left behind by a crash; on NFS, Linux
// maps flock to the server's byte-range locks, which every client sees. A pid (kill(pid, 0)) would
// only mean something on the node that runs the worker.
//
// A worker that holds its lock but has written no heartbeat for `staleAfter` seconds counts as
// dead (hung, or on a node that froze); where the filesystem offers no locks, the heartbeat's age
// alone decides.
import Foundation

public final class RunLock {
    public enum Kind: String, Sendable {
        case worker = "worker.lock", coordinator = "coordinator.lock"
        var who: String { self == .worker ? "a worker" : "`leffa-coord run`" }
    }
    /// What the holder wrote into the lock file: where it runs and since when.
    public struct Holder: Codable, Sendable {
        public var pid: Int, host: String, jobID: String?, unixTime: Double
        enum CodingKeys: String, CodingKey { case pid, host, jobID = "job_id", unixTime = "unix_time" }
        public var whereabouts: String { Heartbeat.whereabouts(pid: pid, host: host, jobID: jobID) }
    }

    public let url: URL
    private var fd: Int32

    /// Takes the lock, or throws naming the file and its holder. Retries briefly, so a concurrent
    /// probe (which takes the lock for an instant) is not mistaken for a holder.
    public static func acquire(_ run: RunDirectory, _ kind: Kind) throws -> RunLock {
        let url = run.url.appendingPathComponent(kind.rawValue)
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT { _ = try run.readState() } // no run there: say that
            let why = e == EROFS || e == EACCES ? "; a run's folder must be writable (state, checkpoints and logs go there)" : ""
            throw RunError("\(url.path): cannot open the run lock (\(String(cString: strerror(e))))\(why)")
        }
        for attempt in 0..<10 {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                let me = Holder(
                    pid: Int(getpid()), host: Heartbeat.hostName, jobID: Heartbeat.schedulerJobID(),
                    unixTime: Date().timeIntervalSince1970)
                let data = try JSONEncoder().encode(me)
                _ = ftruncate(fd, 0)
                _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
                return RunLock(url: url, fd: fd)
            }
            let err = errno
            if err != EWOULDBLOCK {
                // No locks on this filesystem: say so once and go on (the heartbeat decides).
                FileHandle.standardError.write(
                    Data(
                        "warning: \(url.path): the filesystem refuses locks (\(String(cString: strerror(err)))); liveness falls back to the heartbeat's age\n"
                            .utf8))
                return RunLock(url: url, fd: fd)
            }
            if attempt < 9 { usleep(100_000) }
        }
        close(fd)
        let holder = readHolder(url).map { " (\($0.whereabouts))" } ?? ""
        throw RunError(
            "\(url.path): \(kind.who)\(holder) is already working on this run; stop it first, or wait for it to end")
    }

    private init(url: URL, fd: Int32) { self.url = url; self.fd = fd }

    public func release() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN); close(fd); fd = -1
    }
    deinit { release() }

    static func readHolder(_ url: URL) -> Holder? {
        FileManager.default.contents(atPath: url.path).flatMap { try? JSONDecoder().decode(Holder.self, from: $0) }
    }

    public enum Probe: Sendable { case free, held(Holder?), unsupported }

    /// Whether someone holds the lock. Creates nothing: a run without the file has no holder.
    public static func probe(_ run: RunDirectory, _ kind: Kind) -> Probe {
        let url = run.url.appendingPathComponent(kind.rawValue)
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT ? .free : .unsupported }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 { flock(fd, LOCK_UN); return .free }
        return errno == EWOULDBLOCK ? .held(readHolder(url)) : .unsupported
    }
}

/// Whether a run is being worked on, and why we think so.
public struct Liveness: Sendable {
    public var live: Bool
    /// One sentence naming the holder and the evidence (empty when nothing is known).
    public var why: String
    /// Seconds without a heartbeat after which a worker holding its lock counts as dead.
    public static let defaultStaleAfter: Double = 900

    public static func of(_ run: RunDirectory, staleAfter: Double = defaultStaleAfter) -> Liveness {
        if case .held(let h) = RunLock.probe(run, .coordinator) {
            return Liveness(
                live: true,
                why:
                    "`leffa-coord run`\(h.map { " (\($0.whereabouts))" } ?? "") holds \(run.url.appendingPathComponent(RunLock.Kind.coordinator.rawValue).path)"
            )
        }
        let beat = Heartbeat.read(run)
        switch RunLock.probe(run, .worker) {
        case .free:
            return Liveness(
                live: false,
                why: beat.map {
                    "no process holds the worker lock (last heartbeat \(Int($0.age)) s ago from \($0.whereabouts))"
                } ?? "")
        case .held(let h):
            let last = max(beat?.unixTime ?? 0, h?.unixTime ?? 0)
            let age = Date().timeIntervalSince1970 - last
            let who = "a worker (\(beat?.whereabouts ?? h?.whereabouts ?? "unknown"))"
            if age <= staleAfter {
                return Liveness(
                    live: true,
                    why: "\(who) holds \(run.url.appendingPathComponent(RunLock.Kind.worker.rawValue).path)"
                        + (beat.map { ", training stage \($0.stage), heartbeat \(Int($0.age)) s ago" } ?? ""))
            }
            return Liveness(
                live: false,
                why:
                    "\(who) holds the worker lock but wrote no heartbeat for \(Int(age)) s (more than \(Int(staleAfter)) s): counted as dead"
            )
        case .unsupported:
            guard let b = beat else { return Liveness(live: false, why: "") }
            let here = b.host == nil || b.host == Heartbeat.hostName
            let live = b.age <= staleAfter && (!here || kill(pid_t(b.pid), 0) == 0)
            return Liveness(
                live: live,
                why: "no run locks on this filesystem; last heartbeat \(Int(b.age)) s ago from \(b.whereabouts)")
        }
    }
}
