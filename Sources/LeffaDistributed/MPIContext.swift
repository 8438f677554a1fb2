// The MPI world of one training process: rank, size, the ranks on this node, and the collectives
// the trainer calls between steps (barrier, broadcast, all-reduce, all-gather), each checked and
// watched by a watchdog, and `abort` that stops every rank with a message naming this one.
// Not the overlapped gradient reduction (GradientReducer.swift) nor the startup checks
// (MPIContext+Verify.swift).
//
// Contract:
//  1. One context per process (`MPIContext.start()`), because MPI can be initialised once. When
//     no launcher started the process (no OMPI_/PMIX_/PMI_ rank variables) it is a local world of
//     size 1 that makes no MPI call at all, so `swift test` and single-machine runs need no mpirun.
//     `LEFFA_MPI=1` forces MPI (OpenMPI then runs as a singleton), `LEFFA_MPI=0` forces local.
//  2. Thread level MPI_THREAD_SERIALIZED: the training thread and the reducer's communication thread
//     both call MPI, never at the same time (one lock, `mpiLock`). Collectives of the context are
//     refused while a reducer step is in flight: with blocking calls on two threads, two ranks could
//     enter them in different orders and wait on each other forever.
//  3. Errors inside a collective abort the whole job ("rank R: reason"): communicators use
//     MPI_ERRORS_RETURN so the message is ours, not OpenMPI's generic one.
//  4. A watchdog aborts when one collective has waited longer than `watchdogTimeout` seconds
//     (LEFFA_MPI_TIMEOUT, default 600): a rank that hangs without dying would otherwise stall the
//     job forever. A rank that dies is the launcher's business: mpirun kills the others at once.
import CMPI
import Foundation
import LeffaTensor

/// Element types the collectives move.
public protocol MPIElement {
    init()
    static var mpiType: MPIElementType { get }
}
/// The MPI datatype behind an `MPIElement` (kept as an enum so callers need not import CMPI).
public enum MPIElementType: Sendable { case float, double, int64, uint64, byte }
extension Float: MPIElement { public static var mpiType: MPIElementType { .float } }
extension Double: MPIElement { public static var mpiType: MPIElementType { .double } }
extension Int64: MPIElement { public static var mpiType: MPIElementType { .int64 } }
extension UInt64: MPIElement { public static var mpiType: MPIElementType { .uint64 } }
extension UInt8: MPIElement { public static var mpiType: MPIElementType { .byte } }

extension MPIElementType {
    var datatype: MPI_Datatype {
        switch self {
        case .float: return leffa_mpi_float()
        case .double: return leffa_mpi_double()
        case .int64: return leffa_mpi_int64()
        case .uint64: return leffa_mpi_uint64()
        case .byte: return leffa_mpi_byte()
        }
    }
}

public enum ReduceOp: Sendable {
    case sum, min, max
    var mpiOp: MPI_Op {
        switch self {
        case .sum: return leffa_mpi_sum()
        case .min: return leffa_mpi_min()
        case .max: return leffa_mpi_max()
        }
    }
}

/// Seconds on a monotonic clock.
@inline(__always) func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

public final class MPIContext: @unchecked Sendable {
    /// This process's rank in the job and the number of ranks.
    public let rank: Int
    public let size: Int
    /// Rank among the ranks on this node, and their number (MPI_Comm_split_type SHARED).
    public let localRank: Int
    public let localSize: Int
    /// False for the local world of one process: every collective is then the identity.
    public let isDistributed: Bool
    /// The thread level MPI granted (nil when local).
    public let threadLevel: Int32?

    /// Seconds one collective may wait before the watchdog aborts the job.
    public var watchdogTimeout: Double {
        get { watchdog.timeout }
        set { watchdog.timeout = newValue }
    }

    /// Our duplicate of MPI_COMM_WORLD (errors return instead of aborting inside OpenMPI).
    let world: MPI_Comm?
    /// Serialises MPI calls across threads (contract 2).
    let mpiLock = NSLock()
    private let stateLock = NSLock()
    private var reducerSteps = 0
    private var finalized = false
    let watchdog: Watchdog

    /// Thread level requested from MPI (contract 2).
    public static let requiredThreadLevel: Int32 = leffa_mpi_thread_serialized()
    public static let timeoutEnvironmentKey = "LEFFA_MPI_TIMEOUT"
    public static let defaultWatchdogTimeout: Double = 600

    nonisolated(unsafe) private static var shared: MPIContext?
    private static let sharedLock = NSLock()

    /// The context started by `start()`, if any (for code that must abort without being handed it).
    public static var current: MPIContext? { sharedLock.lock(); defer { sharedLock.unlock() }; return shared }

    /// True when a launcher (mpirun, srun with PMIx, hydra) started this process as one rank of a job.
    public static func launchedByMPI(environment: [String: String]) -> Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"].contains { environment[$0] != nil }
    }

    /// Starts (once per process) and returns the context: MPI when launched by mpirun or forced with
    /// LEFFA_MPI=1, else the local world of size 1.
    public static func start(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> MPIContext {
        sharedLock.lock(); defer { sharedLock.unlock() }
        if let shared { return shared }
        let timeout = try watchdogTimeout(environment: environment)
        let mode = environment["LEFFA_MPI"]?.lowercased() ?? "auto"
        let useMPI: Bool
        switch mode {
        case "auto", "": useMPI = launchedByMPI(environment: environment)
        case "1", "on", "yes", "true": useMPI = true
        case "0", "off", "no", "false": useMPI = false
        default:
            throw DistributedError.setting(
                name: "LEFFA_MPI", value: mode, expected: "auto, 1 (force MPI) or 0 (single process)")
        }
        let ctx = useMPI ? try MPIContext(mpiWithTimeout: timeout) : MPIContext(localWithTimeout: timeout)
        shared = ctx
        return ctx
    }

    /// A world of one process that never calls MPI: what `start()` returns without a launcher, and
    /// what tests use. Independent of the shared context.
    public static func local() -> MPIContext { MPIContext(localWithTimeout: defaultWatchdogTimeout) }

    static func watchdogTimeout(environment: [String: String]) throws -> Double {
        guard let s = environment[timeoutEnvironmentKey] else { return defaultWatchdogTimeout }
        guard let t = Double(s), t.isFinite, t > 0 else {
            throw DistributedError.setting(
                name: timeoutEnvironmentKey, value: s, expected: "a positive number of seconds")
        }
        return t
    }

    private init(localWithTimeout timeout: Double) {
        rank = 0; size = 1; localRank = 0; localSize = 1
        isDistributed = false; threadLevel = nil; world = nil
        watchdog = Watchdog(timeout: timeout)
    }

    private init(mpiWithTimeout timeout: Double) throws {
        var initialised: Int32 = 0
        MPI_Initialized(&initialised)
        var provided: Int32 = 0
        if initialised != 0 {
            MPI_Query_thread(&provided)
        } else {
            // A rank's communication thread shares its core with the kernel threads: while it waits
            // for another rank it should yield the core, not spin on it (measured on 2 ranks × 1
            // thread: ~2 % more images/s). The user's setting wins.
            setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0)
            let rc = MPI_Init_thread(nil, nil, MPIContext.requiredThreadLevel, &provided)
            guard rc == leffa_mpi_success() else {
                throw DistributedError.setup(call: "MPI_Init_thread", message: mpiErrorString(rc))
            }
        }
        guard provided >= MPIContext.requiredThreadLevel else {
            MPI_Finalize()
            throw DistributedError.threadLevel(provided: provided, required: MPIContext.requiredThreadLevel)
        }
        var comm: MPI_Comm? = nil
        var rc = MPI_Comm_dup(leffa_mpi_comm_world(), &comm)
        if rc == leffa_mpi_success() { rc = MPI_Comm_set_errhandler(comm, leffa_mpi_errors_return()) }
        guard rc == leffa_mpi_success() else {
            throw DistributedError.setup(call: "MPI_Comm_dup(MPI_COMM_WORLD)", message: mpiErrorString(rc))
        }
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        // Ranks sharing memory with this one: the node, for thread counts and per-node work.
        var node: MPI_Comm? = nil
        rc = MPI_Comm_split_type(comm, leffa_mpi_comm_type_shared(), r, leffa_mpi_info_null(), &node)
        guard rc == leffa_mpi_success() else {
            throw DistributedError.setup(call: "MPI_Comm_split_type(SHARED)", message: mpiErrorString(rc))
        }
        var lr: Int32 = 0, ls: Int32 = 0
        MPI_Comm_rank(node, &lr)
        MPI_Comm_size(node, &ls)
        MPI_Comm_free(&node)
        rank = Int(r); size = Int(s); localRank = Int(lr); localSize = Int(ls)
        isDistributed = true; threadLevel = provided; world = comm
        watchdog = Watchdog(timeout: timeout)
        watchdog.onExpire = { [unowned self] what, waited in
            self.abort(
                "\(what) has waited \(Int(waited)) s for the other ranks (limit \(MPIContext.timeoutEnvironmentKey)="
                    + "\(Int(self.watchdogTimeout)) s): another rank is stuck, or died without the launcher noticing",
                code: 3)
        }
        watchdog.start()
    }

    // MARK: Collectives between steps

    /// Waits until every rank has called it.
    public func barrier() {
        guard isDistributed else { return }
        call("MPI_Barrier") { MPI_Barrier(world) }
    }

    /// Element-wise reduction over all ranks, in place; every rank gets the result.
    public func allreduce<T: MPIElement>(_ values: UnsafeMutableBufferPointer<T>, _ op: ReduceOp = .sum) {
        guard isDistributed, let base = values.baseAddress else { return }
        checkNoReducerStep("allreduce")
        rawAllreduce(
            UnsafeMutableRawPointer(base), count: values.count, type: T.mpiType, op: op, comm: world,
            what: "MPI_Allreduce(\(values.count) x \(T.self), \(op))")
    }

    public func allreduce<T: MPIElement>(_ values: inout [T], _ op: ReduceOp = .sum) {
        values.withUnsafeMutableBufferPointer { allreduce($0, op) }
    }

    public func allreduce<T: MPIElement>(_ value: T, _ op: ReduceOp = .sum) -> T {
        var v = [value]
        allreduce(&v, op)
        return v[0]
    }

    /// Every rank's `values` (the same count on every rank), concatenated in rank order.
    public func allgather<T: MPIElement>(_ values: [T]) -> [T] {
        guard isDistributed else { return values }
        precondition(values.count <= Int(Int32.max), "allgather: \(values.count) elements exceed an MPI count")
        var out = [T](repeating: T(), count: values.count * size)
        let n = Int32(values.count), type = T.mpiType.datatype
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                call("MPI_Allgather(\(values.count) x \(T.self))") {
                    MPI_Allgather(src.baseAddress, n, type, dst.baseAddress, n, type, world)
                }
            }
        }
        return out
    }

    /// Copies `root`'s values into every rank's buffer (the same count on every rank).
    public func broadcast<T: MPIElement>(_ values: UnsafeMutableBufferPointer<T>, root: Int = 0) {
        guard isDistributed, let base = values.baseAddress else { return }
        checkRoot(root)
        let type = T.mpiType.datatype
        forEachChunk(values.count) { lo, n in
            call("MPI_Bcast(\(values.count) x \(T.self), root \(root))") {
                MPI_Bcast(UnsafeMutableRawPointer(base + lo), n, type, Int32(root), world)
            }
        }
    }

    /// `root`'s array on every rank (other ranks' arrays are resized to it).
    public func broadcast<T: MPIElement>(_ values: inout [T], root: Int = 0) {
        guard isDistributed else { return }
        var n = Int64(values.count)
        withUnsafeMutablePointer(to: &n) { broadcast(UnsafeMutableBufferPointer(start: $0, count: 1), root: root) }
        if rank != root && values.count != Int(n) { values = [T](repeating: T(), count: Int(n)) }
        values.withUnsafeMutableBufferPointer { broadcast($0, root: root) }
    }

    /// `root`'s string on every rank.
    public func broadcast(_ string: String, root: Int = 0) -> String {
        guard isDistributed else { return string }
        var bytes = Array(string.utf8)
        broadcast(&bytes, root: root)
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Abort and finalize

    /// Prints "rank R: reason" to stderr and stops every rank of the job with `code`.
    public func abort(_ reason: String, code: Int32 = 1) -> Never {
        // A second thread aborting at the same time (watchdog and main) waits for the first.
        if !abortOnce.try() { while true { sleep(60) } }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        let hostName = String(cString: host)
        let scope = isDistributed ? "aborting all \(size) ranks" : "single process"
        let line = "leffa: rank \(rank): \(reason) [host \(hostName), pid \(getpid()); \(scope), exit code \(code)]\n"
        fputs(line, stderr)
        fflush(stderr); fflush(stdout)
        if isDistributed {
            // Deliberately outside mpiLock: a thread may be blocked in a collective for good, and
            // OpenMPI's abort only asks the launcher to kill the job.
            MPI_Abort(leffa_mpi_comm_world(), code)
        }
        _exit(code)
    }
    private let abortOnce = NSLock()

    /// Ends MPI. Every rank must call it; nothing may use the context afterwards.
    public func finalize() {
        stateLock.lock()
        precondition(
            reducerSteps == 0, "MPIContext.finalize() while a GradientReducer step is in flight; call finish() first")
        let already = finalized
        finalized = true
        stateLock.unlock()
        guard isDistributed, !already else { return }
        watchdog.stop()
        mpiLock.lock()
        var w = world
        MPI_Comm_free(&w)
        MPI_Finalize()
        mpiLock.unlock()
        MPIContext.sharedLock.lock()
        if MPIContext.shared === self { MPIContext.shared = nil }
        MPIContext.sharedLock.unlock()
    }

    // MARK: Plumbing shared with the reducer

    /// Runs one MPI call under the lock and the watchdog; aborts the job if it fails.
    func call(_ what: @autoclosure () -> String, fromReducer: Bool = false, _ body: () -> Int32) {
        let name = what()
        if !fromReducer { checkNoReducerStep(name) }
        let token = watchdog.enter(name)
        mpiLock.lock()
        let rc = body()
        mpiLock.unlock()
        watchdog.leave(token)
        if rc != leffa_mpi_success() { abort("\(name) failed: \(mpiErrorString(rc))", code: 3) }
    }

    /// In-place all-reduce on `comm`, split into chunks that fit MPI's 32-bit counts.
    func rawAllreduce(
        _ base: UnsafeMutableRawPointer, count: Int, type: MPIElementType, op: ReduceOp,
        comm: MPI_Comm?, what: @autoclosure () -> String, fromReducer: Bool = false
    ) {
        let stride = Self.elementBytes(type), dt = type.datatype, mop = op.mpiOp
        forEachChunk(count) { lo, n in
            call(what(), fromReducer: fromReducer) {
                MPI_Allreduce(leffa_mpi_in_place(), base + lo * stride, n, dt, mop, comm)
            }
        }
    }

    static func elementBytes(_ t: MPIElementType) -> Int {
        switch t {
        case .float: return 4;
        case .double, .int64, .uint64: return 8;
        case .byte: return 1
        }
    }

    /// MPI counts are Int32: larger buffers go in chunks of 2^30 elements.
    func forEachChunk(_ count: Int, _ body: (Int, Int32) -> Void) {
        let chunk = 1 << 30
        var lo = 0
        while lo < count {
            let n = min(chunk, count - lo)
            body(lo, Int32(n))
            lo += n
        }
    }

    /// True once finalize() has run: nothing may call MPI any more.
    var isFinalized: Bool { stateLock.lock(); defer { stateLock.unlock() }; return finalized }

    func beginReducerStep() { stateLock.lock(); reducerSteps += 1; stateLock.unlock() }
    func endReducerStep() { stateLock.lock(); reducerSteps -= 1; stateLock.unlock() }

    func checkNoReducerStep(_ what: String) {
        stateLock.lock()
        let steps = reducerSteps, done = finalized
        stateLock.unlock()
        precondition(!done, "MPIContext: \(what) after finalize()")
        precondition(
            steps == 0,
            "MPIContext: \(what) called while a GradientReducer step is in flight (between the first "
                + "markReady and finish); collectives on two threads could cross between ranks and deadlock. Call finish() first"
        )
    }

    private func checkRoot(_ root: Int) {
        precondition(root >= 0 && root < size, "broadcast: root \(root) is not a rank of a world of \(size)")
    }
}

/// MPI's text for an error code.
func mpiErrorString(_ code: Int32) -> String {
    var buf = [CChar](repeating: 0, count: Int(leffa_mpi_max_error_string()) + 1)
    var len: Int32 = 0
    guard MPI_Error_string(code, &buf, &len) == leffa_mpi_success() else { return "MPI error \(code)" }
    return String(cString: buf) + " (MPI error \(code))"
}

/// Watches collectives in progress and calls `onExpire` when one has waited too long.
final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var active: [Int: (what: String, since: Double)] = [:]
    private var nextToken = 0
    private var _timeout: Double
    private var running = false
    var onExpire: ((String, Double) -> Void)?

    init(timeout: Double) { _timeout = timeout }

    var timeout: Double {
        get { lock.lock(); defer { lock.unlock() }; return _timeout }
        set {
            precondition(newValue > 0, "watchdog timeout must be positive"); lock.lock(); _timeout = newValue;
            lock.unlock()
        }
    }

    func enter(_ what: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        nextToken += 1
        active[nextToken] = (what, monotonicSeconds())
        return nextToken
    }

    func leave(_ token: Int) { lock.lock(); active[token] = nil; lock.unlock() }

    func start() {
        lock.lock(); running = true; lock.unlock()
        let t = Thread { [self] in
            while true {
                lock.lock()
                let keepRunning = running, limit = _timeout
                let now = monotonicSeconds()
                let late = active.values.filter { now - $0.since > limit }.min { $0.since < $1.since }
                lock.unlock()
                if !keepRunning { return }
                if let late { onExpire?(late.what, now - late.since); return }
                usleep(UInt32(min(max(limit / 4, 0.05), 1.0) * 1e6))
            }
        }
        t.name = "leffa-mpi-watchdog"
        t.start()
    }

    func stop() { lock.lock(); running = false; lock.unlock() }
}
