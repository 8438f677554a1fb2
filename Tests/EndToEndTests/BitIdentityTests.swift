// Refactors keep training bit-identical: a tiny run through two stages (EMA carried, gradient
// accumulation, the Leffa loss, fixed-order folding in the second) ends in checkpoints whose
// every dataset hashes to the values recorded before the redesign of issue 16. A change that
// alters training on purpose must re-record them (the failure message prints the new table).
// The bits depend on the BLAS kernels too: OpenBLAS picks them by CPU (AVX2 and AVX-512 kernels
// sum in other orders), so the worker runs with OPENBLAS_CORETYPE=Haswell, the AVX2 + FMA kernels
// every x86 machine we target runs, and the table holds on any of them.
import XCTest
import Foundation
import LeffaTensor
import LeffaCheckpoint
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class BitIdentityTests: XCTestCase {
    /// xxh64 of each group's datasets in name order, hashed once more per group; plus the
    /// counters the checkpoint records.
    static func digests(_ url: URL) throws -> [String: String] {
        let r = try CheckpointReader(url: url)
        defer { r.close() }
        var out: [String: String] = [:]
        for g in r.groupPaths.sorted() {
            var h = XXHash64()
            for (name, t) in try r.readGroup(g).sorted(by: { $0.name < $1.name }) {
                var n = name
                n.withUTF8 { h.update(UnsafeRawBufferPointer($0)) }
                t.scalars.withUnsafeBytes { h.update($0) }
            }
            out[g] = String(h.digest(), radix: 16)
        }
        for key in ["step", "adam_step", "ema_updates"] { out[key] = r.meta[key]?.description }
        return out
    }

    func testTinyRunMatchesRecordedChecksums() throws {
        let cfg = tinyConfig(stages: """
              - {name: s0, resolution: 16x16, steps: 3, batch: 2, lr: 1.0e-3, grad_accum: 2}
              - {name: s1, resolution: 16x16, steps: 2, batch: 2, lr: 5.0e-4, leffa: {weight: 1.0, timestep_threshold: 1000, min_resolution_fraction: 0.0}}
            """, training: "  ema_start: carry\n  ema_warmup: true")
        let run = try makeRun(self, config: cfg, tag: "bits")
        let pinned = ["OPENBLAS_CORETYPE": "Haswell", "LEFFA_THREADS": "2"]
        for args in [["--run", run.url.path], ["--run", run.url.path, "--fixed-order"]] {
            let job = try Binaries.run("leffa-worker", args, environment: pinned)
            XCTAssertEqual(job.status, 0, job.log)
        }
        let s0 = try Self.digests(try CheckpointDirectory(run.checkpointsURL("s0"), keepLast: 0).url(step: 3))
        let s1 = try Self.digests(try CheckpointDirectory(run.checkpointsURL("s1"), keepLast: 0).url(step: 2))
        let got = ["s0": s0, "s1": s1]
        let recorded: [String: [String: String]] = [
            "s0": ["step": "3", "adam_step": "3", "ema_updates": "3", "params": "ca94b3d8cf58608a",
                   "optimizer/m": "e039a3acae72307f", "optimizer/v": "2a42efe1373703f3", "ema": "51d1ff38e7b4a49a"],
            "s1": ["step": "2", "adam_step": "2", "ema_updates": "5", "params": "dd1e1d9a493b753a",
                   "optimizer/m": "8b0c805ab83fb67b", "optimizer/v": "89020f7b8d5b8ebd", "ema": "8a7b16808aaf5d29"],
        ]
        XCTAssertEqual(got, recorded, "recorded before issue 16; now:\n\(got)")
    }
}
