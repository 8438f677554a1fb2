// Overlapped gradient averaging, as in PyTorch DDP: the flat gradient block is cut into buckets
// (Buckets.swift); backward calls `markReady(i)` when parameter i's gradient is final, a bucket whose
// last parameter is marked is all-reduced by a communication thread while backward goes on, and
// `finish()` waits for the rest and reports how long it waited. Not the bucket assignment, not the
// optimizer step, not loss scaling.
//
// Design constraints (numbered, like Horovod's, so a change can say which one it relaxes):
//  1. One communication thread per reducer makes every MPI call of the reduction, each a blocking
//     collective. WHY not MPI_Iallreduce from markReady: OpenMPI progresses non-blocking collectives
//     only inside MPI calls, and backward is pure compute with no MPI calls, so an Iallreduce would
//     sit idle until finish() unless backward polled MPI_Test between ops. A thread blocked in
//     MPI_Allreduce drives the transfer itself, so communication really overlaps compute.
//  2. Buckets are reduced strictly in index order 0, 1, 2, … on every rank: bucket b starts only
//     after b−1, even when b was ready first. Collectives on a communicator must be entered in the
//     same order on every rank; a ready-order queue could differ between ranks (thread timing) and
//     deadlock or pair different buckets. Bucket 0 holds the last parameters, ready first.
//  3. The reducer has its own duplicate of the world communicator, so its messages never match the
//     context's, and the context refuses collectives between the first markReady and finish().
//  4. MPI_THREAD_SERIALIZED is enough, and is what the context requests: the training thread and the
//     communication thread never call MPI at the same time (the context's lock, and 3). MULTIPLE would
//     add locking inside OpenMPI to every call.
//  5. A bucket belongs to the communication thread from the moment it is ready until finish()
//     returns: backward must not write a parameter's gradient after marking it. Buckets are disjoint
//     ranges, so the rest of backward keeps writing the block freely.
//  6. The communication thread also divides its bucket by the world size (the average) right after
//     reducing it, so that pass overlaps backward too.
//  7. `fixedOrder` replaces MPI_Allreduce by the ordered sum of OrderedSum.swift: results identical
//     bit for bit on every rank, for any bucket cap, thread count or MPI algorithm choice. Without it,
//     MPI_Allreduce may associate the sum differently for different message sizes or N > 2.
//  8. finish() marks every parameter not yet marked (unused parameters reduce their zero gradient) and
//     counts them in `lateParameters`, so the trainer can see lost overlap. reduceAll() marks all and
//     finishes: the non-overlapped baseline.
//  9. While it waits for the other ranks, a blocked MPI call busy-polls (OpenMPI's shared-memory
//     transport), so the communication thread uses a core during transfers: on a node where kernel
//     threads already fill every core, overlap trades compute for communication. Measure with
//     `leffa-mpi-check bench`.
// 10. On one rank (a local context, or mpirun -np 1) there is no thread and no copy: the block is
//     already its own average.
import CMPI
import Foundation
import LeffaTensor

/// What one step's reduction cost.
public struct ReduceTiming: Sendable, CustomStringConvertible {
    /// Seconds the caller was blocked in finish() (or reduceAll()): the communication NOT hidden
    /// behind backward. Divide by the step time for the fraction of the step spent waiting.
    public var waitSeconds: Double = 0
    /// Seconds the communication thread spent in MPI and averaging for this step, hidden or not.
    public var commSeconds: Double = 0
    /// From the first markReady (or reduceAll) to the end of finish().
    public var spanSeconds: Double = 0
    public var buckets = 0
    public var bytes = 0
    /// Parameters finish() had to mark because backward never did.
    public var lateParameters = 0

    public var description: String {
        String(
            format: "reduce: %d buckets, %.1f MB, comm %.1f ms, waited %.1f ms, %d late params",
            buckets, Double(bytes) / 1e6, commSeconds * 1e3, waitSeconds * 1e3, lateParameters)
    }
}

public final class GradientReducer {
    public let context: MPIContext
    public let buckets: [Bucket]
    public let fixedOrder: Bool
    /// The flat gradient block (kept alive while the communication thread uses it).
    public let gradients: Tensor
    private let state: ReducerState
    private var closed = false

    /// - Parameters:
    ///   - gradients: the flat block; parameter i occupies [offset_i, offset_i + sizes[i]) with
    ///     offsets the running sum of `parameterSizes`. Pass a view to reduce only a sub-range.
    ///   - capBytes: bucket cap; default `LEFFA_BUCKET_MB` or 25 MiB.
    public init(
        context: MPIContext, gradients: Tensor, parameterSizes: [Int], capBytes: Int? = nil,
        firstCapBytes: Int? = nil, segments: [Range<Int>]? = nil, fixedOrder: Bool = false
    ) throws {
        let total = parameterSizes.reduce(0, +)
        precondition(
            total == gradients.count,
            "GradientReducer: parameter sizes add up to \(total) elements but the gradient block has \(gradients.count)"
        )
        let cap = try capBytes ?? BucketLimits.capBytes()
        self.context = context
        self.gradients = gradients
        self.fixedOrder = fixedOrder
        self.buckets = assignBuckets(
            sizes: parameterSizes, capBytes: cap, firstCapBytes: firstCapBytes, segments: segments)
        var bucketOf = [Int](repeating: 0, count: parameterSizes.count)
        for b in buckets { for p in b.parameters { bucketOf[p] = b.index } }
        state = ReducerState(buckets: buckets, bucketOf: bucketOf)
        guard context.size > 1 else { return } // constraint 10

        var comm: MPI_Comm? = nil
        context.call("MPI_Comm_dup(reducer communicator)") { MPI_Comm_dup(context.world, &comm) }
        context.call("MPI_Comm_set_errhandler(reducer)") { MPI_Comm_set_errhandler(comm, leffa_mpi_errors_return()) }
        let maxBucket = buckets.map(\.count).max() ?? 0
        let scratch =
            fixedOrder
            ? UnsafeMutablePointer<Float>.allocate(
                capacity: MPIContext.orderedScratchCount(maxBucket, size: context.size)) : nil
        state.startThread(context: context, comm: comm, base: gradients.data, fixedOrder: fixedOrder, scratch: scratch)
    }

    deinit { if !closed { state.stopThread() } }

    /// Backward has produced parameter `index`'s final gradient. Thread-safe; once per step.
    public func markReady(_ index: Int) {
        state.lock.lock()
        defer { state.lock.unlock() }
        precondition(
            index >= 0 && index < state.marked.count,
            "GradientReducer.markReady(\(index)): no such parameter (there are \(state.marked.count))")
        precondition(
            !state.marked[index],
            "GradientReducer.markReady(\(index)): already marked in this step; mark each parameter once between finish() calls"
        )
        beginStepIfNeeded()
        state.mark(index)
        state.lock.broadcast()
    }

    /// Waits until every bucket is reduced and averaged; marks the parameters backward did not.
    @discardableResult
    public func finish() -> ReduceTiming { finish(countLate: true) }

    /// The non-overlapped path: marks every parameter now and waits for all buckets.
    @discardableResult
    public func reduceAll() -> ReduceTiming { finish(countLate: false) }

    /// reduceAll, leaving the sum over ranks (`average: false`) instead of the average.
    @discardableResult
    public func reduceAll(average: Bool) -> ReduceTiming {
        state.lock.lock(); state.average = average; state.lock.unlock()
        defer { state.lock.lock(); state.average = true; state.lock.unlock() }
        return finish(countLate: false)
    }

    /// Stops the communication thread and frees the communicator. Every rank must call it (the
    /// free is collective), between steps.
    public func close() {
        guard !closed else { return }
        state.lock.lock()
        precondition(!state.stepActive, "GradientReducer.close() during a step; call finish() first")
        state.lock.unlock()
        closed = true
        state.stopThread()
        if state.comm != nil {
            var comm: MPI_Comm? = state.comm
            context.call("MPI_Comm_free(reducer communicator)") { MPI_Comm_free(&comm) }
            state.comm = nil
        }
    }

    private func beginStepIfNeeded() {
        guard !state.stepActive else { return }
        precondition(!closed, "GradientReducer used after close()")
        state.stepActive = true
        state.stepStart = monotonicSeconds()
        state.commSeconds = 0
        context.beginReducerStep()
    }

    private func finish(countLate: Bool) -> ReduceTiming {
        state.lock.lock()
        beginStepIfNeeded()
        var late = 0
        for i in state.marked.indices where !state.marked[i] { state.mark(i); late += 1 }
        state.lock.broadcast()
        let t0 = monotonicSeconds()
        if context.size == 1 {
            state.next = buckets.count // constraint 10: nothing to do
        }
        while state.next < buckets.count { state.lock.wait() }
        let t1 = monotonicSeconds()
        var timing = ReduceTiming()
        timing.waitSeconds = t1 - t0
        timing.commSeconds = state.commSeconds
        timing.spanSeconds = t1 - state.stepStart
        timing.buckets = buckets.count
        timing.bytes = gradients.count * MemoryLayout<Float>.stride
        timing.lateParameters = countLate ? late : 0
        state.reset()
        state.lock.unlock()
        context.endReducerStep()
        return timing
    }
}

/// Everything the communication thread shares with the training thread, under `lock`.
final class ReducerState: @unchecked Sendable {
    let lock = NSCondition()
    let buckets: [Bucket]
    let bucketOf: [Int]
    var marked: [Bool]
    var pending: [Int]
    var ready: [Bool]
    /// The next bucket the communication thread reduces (constraint 2); all done when == count.
    var next = 0
    var stepActive = false
    /// Divide each reduced bucket by the rank count (constraint 6); off for reduceAll(average: false).
    var average = true
    var stepStart = 0.0
    var commSeconds = 0.0
    var shutdown = false
    // Set once before the communication thread starts, read only by it.
    var comm: MPI_Comm? = nil
    private var base: UnsafeMutablePointer<Float>? = nil
    private var scratch: UnsafeMutablePointer<Float>? = nil
    private var fixedOrder = false
    private var exited: DispatchSemaphore? = nil

    init(buckets: [Bucket], bucketOf: [Int]) {
        self.buckets = buckets
        self.bucketOf = bucketOf
        marked = [Bool](repeating: false, count: bucketOf.count)
        pending = buckets.map(\.parameters.count)
        ready = [Bool](repeating: false, count: buckets.count)
    }

    /// Under `lock`.
    func mark(_ i: Int) {
        marked[i] = true
        let b = bucketOf[i]
        pending[b] -= 1
        if pending[b] == 0 { ready[b] = true }
    }

    /// Under `lock`.
    func reset() {
        for i in marked.indices { marked[i] = false }
        for b in buckets.indices { pending[b] = buckets[b].parameters.count; ready[b] = false }
        next = 0
        stepActive = false
    }

    func startThread(
        context: MPIContext, comm: MPI_Comm?, base: UnsafeMutablePointer<Float>, fixedOrder: Bool,
        scratch: UnsafeMutablePointer<Float>?
    ) {
        self.comm = comm
        self.base = base
        self.scratch = scratch
        self.fixedOrder = fixedOrder
        let done = DispatchSemaphore(value: 0)
        exited = done
        let thread = Thread { [self] in
            defer { self.scratch?.deallocate(); done.signal() }
            run(context)
        }
        thread.name = "leffa-mpi-comm"
        thread.start()
    }

    /// The communication thread's loop: reduce buckets 0, 1, … of each step as they become ready.
    private func run(_ context: MPIContext) {
        let n = context.size
        guard let base else { return }
        while true {
            lock.lock()
            while !shutdown && !(stepActive && next < buckets.count && ready[next]) { lock.wait() }
            if shutdown { lock.unlock(); return }
            let b = buckets[next]
            let average = self.average
            lock.unlock()

            let t0 = monotonicSeconds()
            if b.count > 0 {
                let p = base + b.range.lowerBound
                if fixedOrder, let scratch {
                    context.orderedAllreduce(
                        p, count: b.count, average: average, scratch: scratch, comm: comm, fromReducer: true)
                } else {
                    context.rawAllreduce(
                        UnsafeMutableRawPointer(p), count: b.count, type: .float, op: .sum, comm: comm,
                        what: "MPI_Allreduce(gradient bucket \(b.index), \(b.count) floats)", fromReducer: true)
                    if average { let d = Float(n); for i in 0..<b.count { p[i] = p[i] / d } }
                }
            }
            let dt = monotonicSeconds() - t0

            lock.lock()
            commSeconds += dt
            next += 1
            lock.broadcast()
            lock.unlock()
        }
    }

    func stopThread() {
        guard let exited else { return }
        lock.lock(); shutdown = true; lock.broadcast(); lock.unlock()
        exited.wait()
        self.exited = nil
    }
}
