// `leffa-coord init --json` and `leffa-coord export --dtype/--json`, as built binaries: a tiny run
// made and trained by the commands, exported in every dtype and format, read back by the readers
// that load exports (LeffaModel.loadWeights, loadDiffusersExport) and compared with the float32
// export within each dtype's rounding.
import XCTest
import Foundation
import LeffaModels
import LeffaRunFormat
import LeffaTraining
import SafeTensors
import TestSupport
import RunTestSupport

final class ExportCommandTests: XCTestCase {
    func coord(_ args: [String]) throws -> Ran { try Binaries.run("leffa-coord", args) }

    /// The stdout of a `--json` command as a JSON object (fails the test when it is not one).
    func object(_ r: Ran, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let o = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertNotNil(o, "not one JSON object:\n\(r.log)", file: file, line: line)
        return o ?? [:]
    }

    /// A model with the weights of an export (a leffa file or diffusers folders), as one flat array.
    func readBack(_ path: String, _ format: ExportFormat, config: RunConfig) throws -> [Float] {
        let m = try LeffaModel(config: config.model, seed: 1234)
        if format == .leffa { try m.loadWeights(from: path) } else { try m.loadDiffusersExport(folder: path) }
        let v = m.parameters.values!
        return Array(UnsafeBufferPointer(start: v.data, count: v.count))
    }

    func testInitJSONThenExportsInEveryDTypeRoundTrip() throws {
        let root = try tempFolder(self, "export-dtype")
        let cfgURL = root.appendingPathComponent("c.yaml"), runURL = root.appendingPathComponent("run")
        try tinyConfig(stages: "  - {name: s0, resolution: 16x16, steps: 2, batch: 2, lr: 1.0e-3}")
            .replacingOccurrences(of: "space: pixel}", with: "space: pixel, synthesize: {count: 4, size: 16x16}}")
            .write(to: cfgURL, atomically: true, encoding: .utf8)

        // init --json: one object, the run, its id, the stages and the data made.
        var r = try coord(["init", "--config", cfgURL.path, "--run", runURL.path, "--json"])
        XCTAssertEqual(r.status, 0, r.log)
        let made = try object(r)
        XCTAssertEqual(made["run"] as? String, runURL.path)
        XCTAssertEqual(made["run_id"] as? String, try RunDirectory(runURL.path).readState().runID)
        let stages = made["stages"] as? [[String: Any]] ?? []
        XCTAssertEqual(stages.count, 1, r.stdout)
        XCTAssertEqual(stages.first?["name"] as? String, "s0")
        XCTAssertEqual(stages.first?["resolution"] as? String, "16x16")
        XCTAssertEqual(stages.first?["steps"] as? Int, 2)
        XCTAssertEqual(stages.first?["batch"] as? Int, 2)
        let data = made["data"] as? [String: Any] ?? [:]
        XCTAssertEqual(data["synthesized"] as? Bool, true, r.stdout)
        XCTAssertEqual(data["action"] as? String, "synthesized")
        XCTAssertEqual(data["count"] as? Int, 4)
        // A second init on the same (absolute) data root keeps the data: synthesized false.
        try String(contentsOf: cfgURL, encoding: .utf8)
            .replacingOccurrences(of: "root: data,", with: "root: \(runURL.path)/data,")
            .write(to: cfgURL, atomically: true, encoding: .utf8)
        r = try coord(["init", "--config", cfgURL.path, "--run", root.appendingPathComponent("run2").path, "--json"])
        XCTAssertEqual(r.status, 0, r.log)
        let kept = try object(r)["data"] as? [String: Any] ?? [:]
        XCTAssertEqual(kept["synthesized"] as? Bool, false, r.stdout)
        XCTAssertEqual(kept["action"] as? String, "kept", r.stdout)

        r = try Binaries.run("leffa-worker", ["--run", runURL.path, "--all-stages"])
        XCTAssertEqual(r.status, 0, r.log)
        let config = try RunDirectory(runURL.path).readConfig()

        // Every format and dtype; float32 is the reference (the trained weights bit for bit).
        var reports: [String: [String: Any]] = [:], values: [String: [Float]] = [:]
        for format in ExportFormat.allCases {
            for dtype in ExportDType.allCases {
                let key = "\(format.rawValue)-\(dtype.rawValue)"
                let out = root.appendingPathComponent(format == .leffa ? "\(key).safetensors" : key).path
                r = try coord([
                    "export", "--run", runURL.path, "--format", format.rawValue, "--dtype", dtype.rawValue,
                    "--out", out, "--json"
                ])
                XCTAssertEqual(r.status, 0, r.log)
                let report = try object(r)
                XCTAssertEqual(report["format"] as? String, format.rawValue)
                XCTAssertEqual(report["dtype"] as? String, dtype.rawValue)
                XCTAssertEqual(report["stage"] as? String, "s0")
                XCTAssertEqual(report["step"] as? Int, 2, "the final weights' step")
                XCTAssertEqual(report["ema"] as? Bool, false)
                XCTAssertEqual(report["out"] as? String, out)
                let files = report["files"] as? [[String: Any]] ?? []
                XCTAssertEqual(files.count, format == .leffa ? 1 : 3, r.stdout)
                for f in files {
                    let path = f["path"] as? String ?? ""
                    let st = try SafeTensorsFile(path: path)
                    XCTAssertEqual(f["tensors"] as? Int, st.names.count, path)
                    XCTAssertEqual(f["bytes"] as? Int, 8 + st.headerLength + st.dataSize, path)
                    XCTAssertEqual(st.metadata["dtype"], dtype.rawValue, path)
                    XCTAssertEqual(st.metadata["step"], "2", path)
                    XCTAssertEqual(Set(try st.names.map { try st.dtype(of: $0) }), [dtype.safeTensors], path)
                }
                XCTAssertEqual(report["tensors"] as? Int, files.reduce(0) { $0 + ($1["tensors"] as? Int ?? 0) })
                reports[key] = report
                values[key] = try readBack(out, format, config: config)
            }
        }

        for format in ExportFormat.allCases {
            let f32 = values["\(format.rawValue)-float32"]!
            let trained = try RunDirectory(runURL.path).finalWeightsURL("s0").path
            XCTAssertEqual(f32, try readBack(trained, .leffa, config: config), "float32 is the trained weights")
            func dataBytes(_ key: String) -> [Int] {
                (reports[key]!["files"] as! [[String: Any]]).map {
                    let st = try! SafeTensorsFile(path: $0["path"] as! String)
                    return st.dataSize
                }
            }
            let halves: [(ExportDType, Tolerance)] = [
                (.float16, Tolerances.float16Storage), (.bfloat16, Tolerances.bfloat16Storage)
            ]
            for (dtype, tol) in halves {
                let key = "\(format.rawValue)-\(dtype.rawValue)", half = values[key]!
                let (worst, at) = worstError(half, f32, tol)
                XCTAssertLessThanOrEqual(
                    worst, 1, "\(key): value \(at) is \(half[at]), float32 \(f32[at]) (\(tol.why))")
                XCTAssertNotEqual(half, f32, "\(key): rounded values differ from float32 somewhere")
                // Sizes halve: every tensor's bytes, and the files to within their headers.
                XCTAssertEqual(dataBytes(key).map { $0 * 2 }, dataBytes("\(format.rawValue)-float32"), key)
                let b16 = reports[key]!["bytes"] as! Int
                let b32 = reports["\(format.rawValue)-float32"]!["bytes"] as! Int
                XCTAssertEqual(Double(b16) / Double(b32), 0.5, accuracy: 0.02, key)
            }
        }

        // Text output (no --json) names the dtype.
        r = try coord(["export", "--run", runURL.path, "--dtype", "float16", "--out", root.path + "/text.safetensors"])
        XCTAssertEqual(r.status, 0, r.log)
        XCTAssertTrue(r.stdout.hasPrefix("exported stage s0 from") && r.stdout.contains("(float16)"), r.stdout)
    }

    /// Weights beyond float16's range are refused (exit 1) naming the first tensor, its count and
    /// largest |value|, before anything is written; bfloat16 (float32's range) takes them. A
    /// value that is not a dtype is a usage error (exit 2) listing the dtypes.
    func testOverflowIsRefusedAndABadDTypeIsAUsageError() throws {
        let stages = "  - {name: s0, resolution: 16x16, steps: 2, batch: 2, lr: 1.0e-3}"
        let run = try makeRun(self, config: tinyConfig(stages: stages), tag: "export-overflow")
        _ = try Trainer(run: run, log: { _ in }).train()
        let config = try run.readConfig()
        let final = run.finalWeightsURL("s0").path
        let m = try LeffaModel(config: config.model, seed: 0)
        try m.loadWeights(from: final)
        let p = m.parameters.all[5], q = m.parameters.all[9]
        p.value.data[0] = -70000; p.value.data[1] = 1e5; q.value.data[0] = 3e38
        try m.saveWeights(to: final, metadata: ["stage": "s0", "step": "2"])

        let scratch = try tempFolder(self, "export-overflow-out")
        for format in ExportFormat.allCases {
            let out = scratch.appendingPathComponent("x-\(format.rawValue)").path
            let r = try coord([
                "export", "--run", run.url.path, "--format", format.rawValue, "--dtype", "float16", "--out", out
            ])
            XCTAssertEqual(r.status, 1, r.log)
            let expect = [
                "float16", p.name, "2 values", "100000", "65504", "3 values in 2 tensors", "float32 or bfloat16"
            ]
            for s in expect {
                XCTAssertTrue(r.stderr.contains(s), "'\(s)' not in:\n\(r.stderr)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(out) was written")
            let left = try FileManager.default.contentsOfDirectory(atPath: scratch.path)
            XCTAssertEqual(left, [], "nothing half-written")
        }
        let out = scratch.appendingPathComponent("bf16.safetensors").path
        var r = try coord(["export", "--run", run.url.path, "--dtype", "bfloat16", "--out", out])
        XCTAssertEqual(r.status, 0, r.log)
        let rounded = try SafeTensorsFile(path: out).tensor(p.name).scalars.prefix(2)
        XCTAssertEqual(Array(rounded), [-70144, 99840], "the nearest bfloat16 values")

        r = try coord(["export", "--run", run.url.path, "--dtype", "float64", "--out", scratch.path + "/y"])
        XCTAssertEqual(r.status, 2, r.log)
        for s in ["--dtype", "float64", "float32", "float16", "bfloat16"] {
            XCTAssertTrue(r.stderr.contains(s), "'\(s)' not in:\n\(r.stderr)")
        }
        r = try coord(["export", "--help"])
        XCTAssertTrue(r.stdout.contains("float32, float16, bfloat16"), r.stdout)
    }
}
