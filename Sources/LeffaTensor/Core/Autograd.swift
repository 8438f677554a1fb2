// Reverse-mode automatic differentiation. Each op that takes a tensor needing a gradient records a
// Node: its inputs and a closure from the output's gradient to the inputs' gradients. `backward()`
// walks the nodes newest first (a topological order), then drops each closure, which frees the
// activations it captured as soon as backward is past them. Checkpoint.swift trades a function's
// activations for recomputing them in backward.
import Foundation

final class Node {
    let op: String
    var inputs: [Tensor]
    /// Output gradient → one gradient (or nil) per input. Closures capture storages or tensors
    /// they need, never the output tensor itself (that would be a cycle).
    var backward: ((Tensor) -> [Tensor?])?
    /// Creation order. Backward runs nodes newest first: a topological order (an op's inputs exist
    /// before it) that is the forward pass reversed, as PyTorch's engine does — so the layers run
    /// last finish their parameters' gradients first, which a data-parallel reducer relies on to
    /// overlap communication with the rest of backward.
    let sequence: UInt64
    nonisolated(unsafe) static var created: UInt64 = 0

    init(op: String, inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        Node.created &+= 1
        sequence = Node.created
        self.op = op
        self.inputs = inputs
        self.backward = backward
    }
}

public enum GradMode {
    nonisolated(unsafe) static var enabled = true
    /// Runs `body` without recording the graph (inference, optimizer updates, evaluation).
    public static func withoutGrad<T>(_ body: () throws -> T) rethrows -> T { try with(false, body) }
    /// Runs `body` with recording on or off (a checkpoint's recomputation needs it on in backward).
    static func with<T>(_ on: Bool, _ body: () throws -> T) rethrows -> T {
        let saved = enabled
        enabled = on
        defer { enabled = saved }
        return try body()
    }
    public static var isEnabled: Bool { enabled }
}

extension Tensor {
    /// Attaches a node to an op's output when any input needs a gradient and grad mode is on.
    /// `backward` gets the output gradient and returns one gradient (or nil) per input.
    @discardableResult
    public func recording(_ op: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        GraphReads.current?.note(inputs)
        guard GradMode.enabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        node = Node(op: op, inputs: inputs, backward: backward)
        return self
    }

    /// Name of the op that produced this tensor, nil for a leaf.
    public var producer: String? { node?.op }

    /// The leaves that need a gradient and that `backward()` from this tensor would reach. A
    /// parameter outside it gets no gradient from this pass — what a data-parallel reducer needs to
    /// know before backward, so it need not wait for it (PyTorch DDP's `find_unused_parameters`).
    public func reachableLeaves() -> Set<ObjectIdentifier> { Tensor.reachableLeaves(from: [self]) }

    /// The leaves that back-propagating from any of `roots` would reach.
    static func reachableLeaves(from roots: [Tensor]) -> Set<ObjectIdentifier> {
        var leaves = Set<ObjectIdentifier>(), visited = Set<ObjectIdentifier>()
        var stack = roots.filter(\.requiresGrad)
        while let t = stack.popLast() {
            guard visited.insert(ObjectIdentifier(t)).inserted else { continue }
            guard let node = t.node else { leaves.insert(ObjectIdentifier(t)); continue }
            for input in node.inputs where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                stack.append(input)
            }
        }
        return leaves
    }

    /// Back-propagates from this tensor. A scalar needs no seed gradient (it is 1).
    public func backward(_ seed: Tensor? = nil) {
        let g: Tensor
        if let seed {
            shapeCheck(seed.shape == shape, "backward (seed gradient)", seed.shape, shape)
            g = seed
        } else {
            precondition(count == 1, "backward: tensor of shape \(shape) is not a scalar; pass a seed gradient")
            g = Tensor(repeating: 1, shape: shape)
        }
        guard requiresGrad else { return }
        Tensor.backward(from: [(self, g)], readyHooks: true)
    }

    /// Back-propagates several (tensor, seed gradient) pairs in one pass: every seed is added first,
    /// then the nodes reachable from any root run newest first. With `readyHooks` false no leaf's
    /// `onGradientReady` is called (a checkpoint's inner pass: the outer pass calls them once).
    static func backward(from roots: [(tensor: Tensor, seed: Tensor)], readyHooks: Bool) {
        for (t, g) in roots where t.requiresGrad { Tensor.accumulate(t, g) }

        // The nodes reachable from the roots (iteratively: the graph can be thousands deep), oldest first.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack = roots.map(\.tensor).filter(\.requiresGrad)
        while let t = stack.popLast() {
            guard t.node != nil, visited.insert(ObjectIdentifier(t)).inserted else { continue }
            order.append(t)
            for input in t.node!.inputs
            where input.requiresGrad && input.node != nil && !visited.contains(ObjectIdentifier(input)) {
                stack.append(input)
            }
        }
        order.sort { $0.node!.sequence < $1.node!.sequence }
        // Leaves with a ready-hook: how many ops still owe them a gradient contribution.
        var pending: [ObjectIdentifier: Int] = [:]
        for t in order where readyHooks {
            for input in t.node!.inputs where input.node == nil && input.requiresGrad && input.onGradientReady != nil {
                pending[ObjectIdentifier(input), default: 0] += 1
            }
        }
        for t in order.reversed() {
            guard let node = t.node, let fn = node.backward else { continue }
            guard let gradOut = t.grad else { continue }
            let grads = fn(gradOut)
            precondition(
                grads.count == node.inputs.count,
                "\(node.op): backward returned \(grads.count) gradients for \(node.inputs.count) inputs")
            for (input, gi) in zip(node.inputs, grads) where input.requiresGrad {
                if let gi { Tensor.accumulate(input, gi) }
                if let hook = input.onGradientReady, input.node == nil, let left = pending[ObjectIdentifier(input)] {
                    pending[ObjectIdentifier(input)] = left - 1
                    if left == 1 { hook() }
                }
            }
            // Free what this node held: its closure's captures, its inputs, its gradient.
            node.backward = nil
            node.inputs = []
            t.grad = nil
            t.gradOwned = false
        }
    }

    /// Adds `g` into `t.grad`. The first gradient of an intermediate is stored as-is (it may share
    /// memory with another tensor); a second one is summed into fresh memory; leaves own theirs.
    static func accumulate(_ t: Tensor, _ g: Tensor) {
        shapeCheck(g.count == t.count, "gradient of \(t.node?.op ?? "leaf")", g.shape, t.shape)
        if let existing = t.grad {
            if t.gradOwned {
                vAdd(existing.data, g.data, existing.data, existing.count)
            } else {
                let sum = Tensor(zeros: t.shape)
                vAdd(existing.data, g.data, sum.data, sum.count)
                t.grad = sum
                t.gradOwned = true
            }
        } else if t.node == nil {
            let own = Tensor(zeros: t.shape)
            own.data.update(from: g.data, count: g.count)
            t.grad = own
            t.gradOwned = true
        } else {
            t.grad = g.shape == t.shape ? g : Tensor(shape: t.shape, storage: g.storage)
            t.gradOwned = false
        }
    }

    /// Gives a leaf a gradient buffer of its own (e.g. a view into a flat gradient block) that
    /// backward adds into.
    public func setGradBuffer(_ buffer: Tensor) {
        shapeCheck(buffer.count == count, "setGradBuffer", buffer.shape, shape)
        grad = buffer.shape == shape ? buffer : Tensor(shape: shape, storage: buffer.storage)
        gradOwned = true
    }

    /// Zeroes the gradient of a leaf in place (keeps a flat-block view), or drops it.
    public func zeroGrad() {
        if let g = grad, gradOwned { g.data.update(repeating: 0, count: g.count) } else { grad = nil }
    }
}

/// out[i] = a[i] + b[i], split over threads.
@inline(__always)
func vAdd(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
    Parallel.for(n, grain: 1 << 15) { r in for i in r { out[i] = a[i] + b[i] } }
}
