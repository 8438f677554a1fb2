// The single-process API: a local context (what `swift test` and runs without mpirun get), the
// reducer's bookkeeping on one rank, the ordered sum and the content hash. No MPI call is made.
import XCTest
@testable import LeffaDistributed
import LeffaTensor

final class LocalContextTests: XCTestCase {
    func testWithoutALauncherTheContextIsLocal() throws {
        XCTAssertFalse(MPIContext.launchedByMPI(environment: ["PATH": "/usr/bin"]))
        XCTAssertTrue(MPIContext.launchedByMPI(environment: ["OMPI_COMM_WORLD_SIZE": "2"]))
        XCTAssertTrue(MPIContext.launchedByMPI(environment: ["PMIX_RANK": "0"]))
        let ctx = try MPIContext.start(environment: [:])
        XCTAssertFalse(ctx.isDistributed)
        XCTAssertEqual([ctx.rank, ctx.size, ctx.localRank, ctx.localSize], [0, 1, 0, 1])
        XCTAssertTrue(MPIContext.current === ctx)
        XCTAssertTrue(try MPIContext.start(environment: [:]) === ctx, "one context per process")
    }

    func testSettingsAreValidated() {
        XCTAssertThrowsError(try MPIContext.watchdogTimeout(environment: ["LEFFA_MPI_TIMEOUT": "soon"])) { e in
            XCTAssertTrue("\(e)".contains("LEFFA_MPI_TIMEOUT"))
        }
        XCTAssertEqual(try MPIContext.watchdogTimeout(environment: ["LEFFA_MPI_TIMEOUT": "2.5"]), 2.5)
        XCTAssertEqual(try MPIContext.watchdogTimeout(environment: [:]), MPIContext.defaultWatchdogTimeout)
        XCTAssertTrue(DistributedError.threadLevel(provided: 1, required: 2).description.contains("MPI_THREAD_FUNNELED"))
    }

    func testLocalCollectivesAreIdentities() throws {
        let ctx = MPIContext.local()
        ctx.barrier()
        var f: [Float] = [1, -2, 3.5]
        ctx.allreduce(&f)
        XCTAssertEqual(f, [1, -2, 3.5])
        XCTAssertEqual(ctx.allreduce(Int64(7), .max), 7)
        XCTAssertEqual(ctx.allgather([UInt64(4), 5]), [4, 5])
        XCTAssertEqual(ctx.broadcast("config", root: 0), "config")
        var o: [Float] = [-0.0, 1.5]
        o.withUnsafeMutableBufferPointer { ctx.allreduceOrdered($0, average: true) }
        XCTAssertEqual(o.map(\.bitPattern), [Float(-0.0).bitPattern, Float(1.5).bitPattern], "one rank: g0 / 1, the sign of zero kept")
        let w = Tensor.randn([100], seed: 1)
        XCTAssertNoThrow(try ctx.verifyIdentical(w, what: "weights"))
        XCTAssertNoThrow(try ctx.verifyIdentical("a: 1", what: "config"))
    }

    func testLocalReducerCountsLateParametersAndKeepsGradients() throws {
        let ctx = MPIContext.local()
        let sizes = [3, 0, 5, 2, 7]
        let g = Tensor.randn([17], seed: 3)
        let before = g.scalars
        let r = try GradientReducer(context: ctx, gradients: g, parameterSizes: sizes, capBytes: 24)
        // Cap 6 floats: 7 alone (over the cap), 2 (+5 would overflow), 5 + 0, 3.
        XCTAssertEqual(r.buckets.map(\.parameters), [[4], [3], [2, 1], [0]])
        for p in [4, 3, 2, 1, 0] { r.markReady(p) }
        XCTAssertEqual(r.finish().lateParameters, 0)
        r.markReady(4)
        let t = r.finish()
        XCTAssertEqual(t.lateParameters, 4, "parameters 0–3 were never marked")
        XCTAssertEqual(t.buckets, 4)
        XCTAssertEqual(t.bytes, 17 * 4)
        XCTAssertEqual(r.reduceAll().lateParameters, 0)
        XCTAssertEqual(g.scalars, before, "one rank: the block is already its own average")
        r.close()
    }

    func testOrderedSumIsLeftToRightFromTheFirstPart() {
        // 1e8 + 1 rounds back to 1e8 in float32, so the order of the additions shows.
        func sum(_ parts: [Float], divisor: Int? = nil) -> Float {
            var out: Float = .nan
            let ps = parts.map { v -> UnsafePointer<Float> in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: 1); p.pointee = v; return UnsafePointer(p)
            }
            defer { ps.forEach { $0.deallocate() } }
            OrderedSum.sum(parts: ps, count: 1, into: &out, dividingBy: divisor)
            return out
        }
        XCTAssertEqual(sum([1e8, -1e8, 1]), 1)
        XCTAssertEqual(sum([1, 1e8, -1e8]), 0)
        XCTAssertEqual(sum([-0.0]).bitPattern, Float(-0.0).bitPattern, "starts from the first part, not from 0 + it")
        let x: Float = 0.7, y: Float = 0.3, z: Float = 0.1
        XCTAssertEqual(sum([x, y, z], divisor: 3).bitPattern, (((x + y) + z) / 3).bitPattern)
        // Division, not multiplication by 1/3: find a value where they differ and check which we get.
        let v = (1...1000).map { Float($0) * 0.37 }.first { $0 / 3 != $0 * (1 / Float(3)) }!
        XCTAssertEqual(sum([v], divisor: 3).bitPattern, (v / 3).bitPattern)
        var block: [Float] = [v, 6]
        OrderedSum.divide(&block, count: 2, by: 3)
        XCTAssertEqual(block.map(\.bitPattern), [(v / 3).bitPattern, Float(2).bitPattern])
    }

    func testContentHashSeesEveryBitAndIgnoresThreadCount() {
        let n = 900_001 // 3.6 MB: several 1 MiB chunks and a ragged tail
        let t = Tensor.randn([n], seed: 9)
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        Parallel.threads = 1
        let h1 = ContentHash.of(UnsafeBufferPointer(t.buffer))
        Parallel.threads = 2
        let h2 = ContentHash.of(UnsafeBufferPointer(t.buffer))
        XCTAssertEqual(h1, h2, "hash depends on the thread count")
        for i in [0, 1, 262_143, 262_144, n - 1] {
            let old = t.data[i]
            t.data[i] = old.nextUp
            XCTAssertNotEqual(ContentHash.of(UnsafeBufferPointer(t.buffer)), h1, "1 ulp at \(i) not seen")
            t.data[i] = old
        }
        XCTAssertNotEqual(ContentHash.of("a"), ContentHash.of("a\0"))
        XCTAssertNotEqual(ContentHash.of(""), ContentHash.of("\0"))
        XCTAssertEqual(ContentHash.of("lr: 1e-5"), ContentHash.of("lr: 1e-5"))
    }

    func testRankGroupsLargestFirst() {
        XCTAssertEqual(groupRanks([[1], [2], [1], [1]]), [[0, 2, 3], [1]])
        XCTAssertEqual(groupRanks([[5], [5]]), [[0, 1]])
        XCTAssertEqual(groupRanks([[2], [1], [1]]), [[1, 2], [0]])
        let e = DistributedError.mismatch(what: "weights", groups: [[0, 2], [1]], detail: "x")
        XCTAssertTrue(e.description.contains("ranks 0, 2 | rank 1"), e.description)
    }
}
