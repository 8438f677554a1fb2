// Ground-truth flows of the synthetic try-on set: for every person pixel, where in the cloth
// image its garment point comes from. Stored as safetensors with
//   "flow"  (H, W, 2) float32: (x, y) in the CLOTH image's normalised coordinates, align_corners
//           = True (x = −1 is the centre of the left-most pixel column, +1 of the right-most);
//   "valid" (H, W)    float32: 1 where the person pixel shows the garment.
// This is exactly what the Leffa loss feeds `grid_sample(align_corners=True)`, so grid-sampling
// the cloth at "flow" reproduces the person's garment pixels where "valid" is 1. Not a flow
// estimator; the attention-flow snapshots compare against these.

import Foundation
import LeffaTensor
import SafeTensors

public struct GroundTruthFlow: Sendable {
    /// (H, W, 2)
    public var flow: Tensor
    /// (H, W)
    public var valid: Tensor

    public init(flow: Tensor, valid: Tensor) {
        shapeCheck(
            flow.rank == 3 && flow.dim(2) == 2 && valid.shape == Array(flow.shape.prefix(2)),
            "GroundTruthFlow", flow.shape, valid.shape, expected: "(H, W, 2) and (H, W)")
        self.flow = flow; self.valid = valid
    }

    public var size: Size { Size(height: flow.dim(0), width: flow.dim(1)) }

    /// Reads a flow file; `expected` (the person image's size) is checked when given.
    public static func read(_ url: URL, expected: Size? = nil) throws -> GroundTruthFlow {
        if !FileManager.default.fileExists(atPath: url.path) {
            throw DataError(.missing, path: url.path, field: SampleField.flow, reason: "no such file")
        }
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(url: url) } catch let e as SafeTensorsError {
            throw DataError(.corrupt, path: url.path, field: SampleField.flow, reason: "\(e)")
        }
        do {
            let flow = try file.tensor("flow"), valid = try file.tensor("valid")
            guard flow.rank == 3, flow.dim(2) == 2, valid.shape == Array(flow.shape.prefix(2)) else {
                throw DataError(
                    .corrupt, path: url.path, field: SampleField.flow,
                    reason:
                        "\"flow\" has shape \(flow.shape) and \"valid\" \(valid.shape); expected (H, W, 2) and (H, W)")
            }
            let g = GroundTruthFlow(flow: flow, valid: valid)
            if let expected, g.size != expected {
                throw DataError(
                    .wrongSize, path: url.path, field: SampleField.flow,
                    reason: "is \(g.size), expected \(expected) like the person image")
            }
            return g
        } catch let e as SafeTensorsError {
            throw DataError(.corrupt, path: url.path, field: SampleField.flow, reason: "\(e)")
        }
    }

    public func write(to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try writeSafeTensors([("flow", flow), ("valid", valid)], to: url)
    }

    /// The flow at a stage resolution: the field is resampled on the person grid (`person`
    /// plan: bilinear for the flow, nearest for `valid`; padding is invalid) and its values are
    /// moved into the resized reference's coordinates (`reference` plan).
    /// Returns flow (H', W', 2) and valid (1, H', W').
    public func resampled(person: ResizePlan, reference: ResizePlan) -> (flow: Tensor, valid: Tensor) {
        shapeCheck(
            person.source == size, "GroundTruthFlow.resampled", [size.height, size.width],
            [person.source.height, person.source.width], expected: "the person plan to start from the flow's size")
        let h = size.height, w = size.width, n = h * w
        if person.isIdentity && reference.isIdentity { return (flow.copy(), valid.copy().reshaped([1, h, w])) }
        let planar = Tensor(zeros: [2, h, w])
        for i in 0..<n { planar.data[i] = flow.data[2 * i]; planar.data[n + i] = flow.data[2 * i + 1] }
        let f = resize(planar, plan: person, mode: .bilinear, fill: 0)
        let v = resize(valid.reshaped([1, h, w]), plan: person, mode: .nearest, fill: 0)
        let H = person.target.height, W = person.target.width, m = H * W
        let out = Tensor(zeros: [H, W, 2])
        for i in 0..<m {
            let p = reference.mapNormalized(x: f.data[i], y: f.data[m + i])
            out.data[2 * i] = p.x; out.data[2 * i + 1] = p.y
        }
        return (out, v)
    }
}
