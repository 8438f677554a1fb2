// The deterministic sum behind `fixedOrder`: every element of the result is
//     (((g_0 + g_1) + g_2) + … + g_{N−1}) / N        (float32, left to right, IEEE division)
// where g_r is rank r's value, identical on every rank, for every bucket size and thread count,
// whatever algorithm MPI would have picked. Not the fast path: plain MPI_Allreduce is that.
//
// Distributed algorithm (the bytes on the wire are those of a ring all-reduce, 2(N−1)/N of the buffer):
//   1. reduce-scatter by MPI_Alltoallv: rank c receives chunk c of every rank's buffer;
//   2. rank c sums its chunk over ranks 0, 1, …, N−1 in that order (and divides);
//   3. MPI_Allgatherv puts every reduced chunk back into every rank's buffer.
//
// Contract for "same weights as one process": one process reproduces the result bit for bit by
// accumulating the N micro-batch gradients g_0 … g_{N−1} (in rank order, micro-batch r being rank
// r's share of the global batch) into the zeroed flat gradient block — backward adds into it, which
// is the left-to-right sum above (up to the sign of zeros) — and then dividing by N, e.g. with
// `OrderedSum.divide`. `OrderedSum.sum(parts:…)` computes the same thing from separate buffers.
// The trainer's fixed order (Trainer.foldInGlobalOrder) sums without dividing, once per sample.
import CMPI
import Foundation
import LeffaTensor

public enum OrderedSum {
    /// `out[i] = (parts[0][i] + parts[1][i] + …) / divisor`, left to right (no division when divisor is nil).
    public static func sum(
        parts: [UnsafePointer<Float>], count: Int, into out: UnsafeMutablePointer<Float>, dividingBy divisor: Int? = nil
    ) {
        precondition(!parts.isEmpty, "OrderedSum.sum: no parts")
        let d = divisor.map(Float.init)
        parts.withUnsafeBufferPointer { ps in
            Parallel.for(count, grain: 1 << 14) { r in
                // Part by part over an L1-sized chunk: each loop vectorises across elements, and
                // every element still adds its parts left to right. `out` may be one of the parts:
                // each element is read from all parts before it is written.
                let chunk = 2048
                withUnsafeTemporaryAllocation(of: Float.self, capacity: chunk) { acc in
                    let a = acc.baseAddress!
                    var lo = r.lowerBound
                    while lo < r.upperBound {
                        let m = min(chunk, r.upperBound - lo)
                        a.update(from: ps[0] + lo, count: m)
                        for j in 1..<ps.count { let p = ps[j] + lo; for i in 0..<m { a[i] += p[i] } }
                        if let d { for i in 0..<m { a[i] = a[i] / d } }
                        (out + lo).update(from: a, count: m)
                        lo += m
                    }
                }
            }
        }
    }

    /// `values[i] /= divisor` (IEEE division, not multiplication by 1/N: the two differ when N is
    /// not a power of two).
    public static func divide(_ values: UnsafeMutablePointer<Float>, count: Int, by divisor: Int) {
        let d = Float(divisor)
        Parallel.for(count, grain: 1 << 14) { r in for i in r { values[i] = values[i] / d } }
    }

    /// Chunk c of an n-element buffer split over `parts` ranks: [n·c/parts, n·(c+1)/parts).
    @inline(__always) static func chunk(_ c: Int, of n: Int, parts: Int) -> Range<Int> {
        (n * c / parts)..<(n * (c + 1) / parts)
    }
}

extension MPIContext {
    /// The deterministic all-reduce (sum, then ÷ N if `average`) of `values`, in place.
    public func allreduceOrdered(_ values: UnsafeMutableBufferPointer<Float>, average: Bool = false) {
        guard let base = values.baseAddress else { return }
        guard isDistributed else {
            return // one rank: g_0 / 1 = g_0

        }
        checkNoReducerStep("allreduceOrdered")
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: Self.orderedScratchCount(values.count, size: size))
        defer { scratch.deallocate() }
        orderedAllreduce(base, count: values.count, average: average, scratch: scratch, comm: world, fromReducer: false)
    }

    /// Scratch floats `orderedAllreduce` needs for `count` elements: N copies of the largest chunk.
    static func orderedScratchCount(_ count: Int, size: Int) -> Int { size * ((count + size - 1) / size) + 1 }

    func orderedAllreduce(
        _ base: UnsafeMutablePointer<Float>, count: Int, average: Bool,
        scratch: UnsafeMutablePointer<Float>, comm: MPI_Comm?, fromReducer: Bool
    ) {
        precondition(
            count <= Int(Int32.max), "ordered all-reduce of \(count) elements exceeds an MPI count; use smaller buckets"
        )
        let n = size, me = rank
        let mine = OrderedSum.chunk(me, of: count, parts: n)
        var sendCounts = [Int32](repeating: 0, count: n), sendDispls = [Int32](repeating: 0, count: n)
        var recvCounts = [Int32](repeating: Int32(mine.count), count: n), recvDispls = [Int32](repeating: 0, count: n)
        for c in 0..<n {
            let r = OrderedSum.chunk(c, of: count, parts: n)
            sendCounts[c] = Int32(r.count); sendDispls[c] = Int32(r.lowerBound)
            recvDispls[c] = Int32(c * mine.count)
        }
        let f = leffa_mpi_float()
        // 1. Reduce-scatter: chunk `me` of every rank, rank order, into scratch.
        call("MPI_Alltoallv(ordered all-reduce of \(count) floats)", fromReducer: fromReducer) {
            MPI_Alltoallv(base, sendCounts, sendDispls, f, scratch, recvCounts, recvDispls, f, comm)
        }
        // 2. Ordered sum of the chunk: left to right over ranks, element-wise (vectorises across
        //    elements without changing any element's order of additions).
        let out = base + mine.lowerBound, m = mine.count
        // Starts from rank 0's values (not 0 + x₀, which would turn a −0 into +0).
        out.update(from: scratch, count: m)
        for r in 1..<n {
            let src = scratch + r * m
            for i in 0..<m { out[i] += src[i] }
        }
        if average { let d = Float(n); for i in 0..<m { out[i] = out[i] / d } }
        // 3. Every reduced chunk to every rank (in place: our chunk is already where it belongs).
        for c in 0..<n { recvCounts[c] = sendCounts[c]; recvDispls[c] = sendDispls[c] }
        call("MPI_Allgatherv(ordered all-reduce of \(count) floats)", fromReducer: fromReducer) {
            MPI_Allgatherv(leffa_mpi_in_place(), 0, f, base, recvCounts, recvDispls, f, comm)
        }
    }
}
