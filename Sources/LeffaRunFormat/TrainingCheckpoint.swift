// A training checkpoint: the flat blocks of the training state (weights, Adam moments, EMA) in
// the parameters' layout, and the counters that place the run (stage, step, optimizer and EMA
// update counts). The one place that writes and reads them; the trainer saves and resumes
// through it, `stage advance`, `export` and `sample` read through it. The file format itself
// (HDF5, checksums, atomic saves) is LeffaCheckpoint's; Checkpoints.md documents these names.
import Foundation
import LeffaTensor
import LeffaCheckpoint

/// The group paths and meta keys of a training checkpoint, spelled once.
public enum CheckpointNames {
    public static let params = "params"
    public static let adamM = "optimizer/m"
    public static let adamV = "optimizer/v"
    public static let ema = "ema"

    public static let step = "step"
    public static let stage = "stage"
    public static let stageIndex = "stage_index"
    public static let dataPosition = "data_position"
    public static let seed = "seed"
    public static let config = "config"
    public static let runID = "run_id"
    public static let adamStep = "adam_step"
    /// The EMA's update count after this step (EMA.swift): the stage's step plus, with
    /// `ema_start: carry`, the updates of the stages before.
    public static let emaUpdates = "ema_updates"
}

public struct TrainingCheckpoint {
    /// A flat block of the state, each a group of per-parameter datasets.
    public enum Block: CaseIterable, Sendable {
        case params, adamM, adamV, ema
        public var group: String {
            switch self {
            case .params: return CheckpointNames.params
            case .adamM: return CheckpointNames.adamM
            case .adamV: return CheckpointNames.adamV
            case .ema: return CheckpointNames.ema
            }
        }
    }

    /// Where the state stands after the checkpoint's step.
    public struct Counters: Equatable, Sendable {
        /// Optimizer steps done in the stage.
        public var step: Int
        /// AdamW's bias-correction count.
        public var adamStep: Int
        /// The EMA's update count (nil: no EMA, or a checkpoint from before `ema_start`).
        public var emaUpdates: Int?
        public init(step: Int, adamStep: Int, emaUpdates: Int?) {
            self.step = step; self.adamStep = adamStep; self.emaUpdates = emaUpdates
        }
    }

    public var counters: Counters
    public var stage: String
    public var stageIndex: Int
    /// Samples consumed in the stage (step × global batch).
    public var dataPosition: Int
    public var seed: UInt64
    /// The run config's text, so a checkpoint says what trained it.
    public var config: String
    public var runID: String
    /// The blocks to write (params at least).
    public var blocks: [Block: Tensor]

    public init(
        counters: Counters, stage: String, stageIndex: Int, dataPosition: Int, seed: UInt64, config: String,
        runID: String, blocks: [Block: Tensor]
    ) {
        self.counters = counters; self.stage = stage; self.stageIndex = stageIndex; self.dataPosition = dataPosition
        self.seed = seed; self.config = config; self.runID = runID; self.blocks = blocks
    }

    /// Saves it as step `counters.step` of `dir` (atomically; older ones beyond keep-last go).
    @discardableResult
    public func save(to dir: CheckpointDirectory, layout: [FlatEntry]) throws -> URL {
        precondition(blocks[.params] != nil, "TrainingCheckpoint.save: no params block")
        var c = CheckpointContents(meta: [
            CheckpointNames.step: .int64(Int64(counters.step)), CheckpointNames.stage: .string(stage),
            CheckpointNames.stageIndex: .int64(Int64(stageIndex)),
            CheckpointNames.dataPosition: .int64(Int64(dataPosition)),
            CheckpointNames.seed: .int64(Int64(bitPattern: seed)), CheckpointNames.config: .string(config),
            CheckpointNames.runID: .string(runID), CheckpointNames.adamStep: .int64(Int64(counters.adamStep))
        ])
        if let u = counters.emaUpdates { c.meta[CheckpointNames.emaUpdates] = .int64(Int64(u)) }
        for block in Block.allCases {
            if let t = blocks[block] { try c.setGroup(block.group, flat: t, layout: layout) }
        }
        return try dir.save(c, step: counters.step)
    }

    /// The counters of an open checkpoint.
    public static func counters(_ reader: CheckpointReader) throws -> Counters {
        var emaUpdates: Int? = nil
        if case .int64(let u)? = reader.meta[CheckpointNames.emaUpdates] { emaUpdates = Int(u) }
        return Counters(
            step: Int(try reader.int64(CheckpointNames.step)),
            adamStep: Int(try reader.int64(CheckpointNames.adamStep)),
            emaUpdates: emaUpdates)
    }

    /// Whether the checkpoint holds `block` (the EMA only when the run had one).
    public static func has(_ reader: CheckpointReader, _ block: Block) -> Bool {
        reader.groupPaths.contains(block.group)
    }

    /// Reads `block` into a flat tensor of the model's layout.
    public static func read(_ reader: CheckpointReader, _ block: Block, into flat: Tensor, layout: [FlatEntry]) throws {
        try reader.readGroup(block.group, into: flat, layout: layout)
    }
}
