// Activation checkpointing (diffusers' gradient_checkpointing, torch.utils.checkpoint): a function
// of tensors runs without keeping its activations, and backward runs it again to get them. One
// extra forward of the function buys its activations' memory.
//
// The gradients are the same bits as without checkpointing:
// - the recomputation runs the same kernels on the same values (they do not depend on threads);
// - the inner backward visits the function's ops in the order the whole graph would: they were
//   contiguous in it, and the checkpoint's nodes take their place in the creation order;
// - float addition does not associate, so each input's gradient is summed in the same order: an
//   input x also read after the function (a skip connection, the timestep embedding) has
//   gradient g_later when the checkpoint's turn comes, where the whole graph would then add the
//   function's g₁, g₂, … to it one by one. The inner pass starts from g_later (the stand-in leaf
//   of x takes over x's gradient) and x gets the result back: ((g_later + g₁) + g₂), not
//   g_later + (g₁ + g₂). Likewise an output also read inside the function starts the inner pass
//   with the gradient the rest of the graph gave it.
// Not here: random numbers inside the function (none of ours draws any), in-place updates of its
// inputs.
import Foundation

/// Runs `body` on `inputs` without keeping its intermediate activations for backward, and
/// recomputes them there. Returns what `body` returns, as tensors whose gradients flow back to
/// `inputs` and to the leaves needing gradients that `body` reads (its parameters).
///
/// `body` must read tensors computed by recorded ops only through `inputs` (it may capture leaves:
/// parameters), return distinct tensors it computes (no input), be deterministic and have no side
/// effects: it runs twice. A side output (features recorded for another model, attention probes)
/// is returned as one more output.
///
/// Data parallelism: a leaf read by `body` gets its `onGradientReady` call once, after the
/// recomputation's backward has added its gradient (the inner pass calls no hooks).
public func checkpoint(_ inputs: [Tensor], _ body: @escaping ([Tensor]) -> [Tensor]) -> [Tensor] {
    guard GradMode.enabled else { return body(inputs) }
    let reads = GraphReads(declared: inputs)
    let outputs = reads.collecting { GradMode.withoutGrad { body(inputs) } }
    let sources = reads.inputs + reads.leaves
    if sources.isEmpty { return outputs }
    for (k, o) in outputs.enumerated() {
        precondition(
            !inputs.contains { $0 === o } && !outputs[..<k].contains { $0 === o },
            "checkpoint: output \(k) is an input or repeats an earlier output; return distinct tensors the function computes"
        )
    }
    let run = Recomputation(inputs: inputs, reads: reads, body: body, outputs: outputs)
    // The anchor's node, created before the outputs' nodes, runs after all of them (newest
    // first): by then every output's gradient is known. The outputs pass it an empty gradient
    // so that it runs when any of them got one (the reference UNet's last hidden state has none).
    let anchor = Tensor(zeros: [0])
    anchor.requiresGrad = true
    anchor.node = Node(op: "checkpoint", inputs: sources) { _ in
        run.backward()
        return Array(repeating: nil, count: sources.count)
    }
    return outputs.enumerated().map { k, o in
        let t = Tensor(shape: o.shape, storage: o.storage, requiresGrad: true)
        t.node = Node(op: "checkpoint output", inputs: [anchor]) { g in
            run.seeds[k] = g
            return [Tensor(zeros: [0])]
        }
        return t
    }
}

/// What a checkpointed function reads from the graph on its first run: which of its declared
/// inputs, and which leaves needing gradients. `recording` reports every op's inputs here.
final class GraphReads {
    /// The collector of the checkpoint whose first run is in progress (nil otherwise).
    nonisolated(unsafe) static var current: GraphReads?
    private let declared: Set<ObjectIdentifier>
    /// Declared inputs computed by recorded ops (they get stand-ins in the recomputation), and
    /// leaves, in the order first read.
    private(set) var inputs: [Tensor] = [], leaves: [Tensor] = []
    private var seen = Set<ObjectIdentifier>()

    init(declared: [Tensor]) { self.declared = Set(declared.map(ObjectIdentifier.init)) }

    func note(_ tensors: [Tensor]) {
        for t in tensors where t.requiresGrad && seen.insert(ObjectIdentifier(t)).inserted {
            if t.node == nil {
                leaves.append(t)
            } else if declared.contains(ObjectIdentifier(t)) {
                inputs.append(t)
            } else {
                fatalError(
                    "checkpoint: the function reads a tensor computed by \(t.node!.op) outside it that is not one of its inputs; "
                        + "pass it in `inputs` (its gradient would be lost)")
            }
        }
    }

    func collecting<T>(_ body: () -> T) -> T {
        let saved = GraphReads.current
        GraphReads.current = self
        defer { GraphReads.current = saved }
        return body()
    }
}

/// One checkpoint's backward: the output gradients as they arrive, then the recomputation.
final class Recomputation {
    let inputs: [Tensor]
    let intermediates: [Tensor]
    let leaves: Set<ObjectIdentifier>
    let body: ([Tensor]) -> [Tensor]
    let shapes: [[Int]]
    /// Gradient of each output, set by its node; nil when it got none.
    var seeds: [Tensor?]

    init(inputs: [Tensor], reads: GraphReads, body: @escaping ([Tensor]) -> [Tensor], outputs: [Tensor]) {
        self.inputs = inputs
        intermediates = reads.inputs
        leaves = Set(reads.leaves.map(ObjectIdentifier.init))
        self.body = body
        shapes = outputs.map(\.shape)
        seeds = Array(repeating: nil, count: outputs.count)
    }

    /// Recomputes the function from stand-in leaves of its inputs and back-propagates the output
    /// gradients through it; the inputs' gradients are then their stand-ins' (see the header).
    func backward() {
        var standIns: [ObjectIdentifier: Tensor] = [:]
        for x in intermediates {
            let leaf = Tensor(shape: x.shape, storage: x.storage, requiresGrad: true)
            leaf.grad = x.grad
            leaf.gradOwned = x.gradOwned
            standIns[ObjectIdentifier(x)] = leaf
        }
        let outputs = GradMode.with(true) { body(inputs.map { standIns[ObjectIdentifier($0)] ?? $0 }) }
        precondition(
            outputs.map(\.shape) == shapes,
            "checkpoint: the recomputation returned shapes \(outputs.map(\.shape)), the first run \(shapes)")
        var roots: [(tensor: Tensor, seed: Tensor)] = []
        for (o, seed) in zip(outputs, seeds) {
            guard let seed, o.requiresGrad else { continue }
            precondition(o.node != nil, "checkpoint: an output is a leaf; return tensors the function computes")
            roots.append((o, seed))
        }
        seeds = Array(repeating: nil, count: seeds.count)
        precondition(
            Tensor.reachableLeaves(from: roots.map(\.tensor)).allSatisfy { id in
                leaves.contains(id) || standIns.values.contains { ObjectIdentifier($0) == id }
            }, "checkpoint: the recomputation reached a leaf the first run did not read")
        Tensor.backward(from: roots, readyHooks: false)
        for x in intermediates {
            let leaf = standIns[ObjectIdentifier(x)]!
            x.grad = leaf.grad
            x.gradOwned = leaf.gradOwned
        }
    }
}
