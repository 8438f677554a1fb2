// Named parameters in one flat block. Modules register parameters under dotted names that are
// exactly the published state dict's (`unet.down_blocks.0.resnets.0.conv1.weight`); `flatten()`
// then moves every value into one allocation and `enableGradients()` gives every parameter a
// gradient view into a second one, so MPI buckets, optimizers and checkpoints all slice the same
// two blocks.
import LeffaTensor

/// One trainable array and its dotted name.
public final class Parameter {
    public let name: String
    public let shape: [Int]
    /// The current value (a view into the flat block after `flatten()`).
    public internal(set) var value: Tensor
    /// Offset of this parameter in the flat blocks (valid after `flatten()`).
    public internal(set) var offset = 0

    init(name: String, value: Tensor) {
        self.name = name
        self.shape = value.shape
        self.value = value
    }
    public var count: Int { value.count }
    public var grad: Tensor? { value.grad }
}

/// The parameters of a model in registration order, with their flat value and gradient blocks.
public final class ParameterSet {
    public private(set) var all: [Parameter] = []
    private var index: [String: Parameter] = [:]
    public private(set) var values: Tensor? = nil
    public private(set) var grads: Tensor? = nil

    public init() {}

    func register(_ name: String, _ value: Tensor) -> Parameter {
        precondition(index[name] == nil, "parameter \(name) registered twice")
        precondition(values == nil, "parameter \(name) registered after flatten()")
        let p = Parameter(name: name, value: value.requiringGrad())
        all.append(p)
        index[name] = p
        return p
    }

    public subscript(name: String) -> Parameter? { index[name] }
    public var names: [String] { all.map(\.name) }
    public var count: Int { all.reduce(0) { $0 + $1.count } }

    /// Moves every value into one block (views keep each parameter's name and shape).
    public func flatten() {
        guard values == nil else { return }
        // Each parameter's own memory is freed as soon as it is copied, so the peak stays near one
        // copy of the model (the flat block's pages are first touched by the copy).
        let v = Tensor(shape: [count], storage: Storage(count: count, zeroed: false))
        var off = 0
        for p in all {
            let n = p.count
            (v.data + off).update(from: p.value.data, count: n)
            p.value = Tensor(shape: p.shape, storage: Storage(viewOf: v.storage, offset: off, count: n)).requiringGrad()
            p.offset = off
            off += n
        }
        values = v
    }

    /// Allocates the flat gradient block (once) and points every parameter's gradient at its view,
    /// so backward adds straight into it. Inference never calls this and never pays for it.
    @discardableResult
    public func enableGradients() -> Tensor {
        flatten()
        if let grads { return grads }
        let g = Tensor(shape: [count], storage: Storage(onDemand: count))
        for p in all {
            p.value.setGradBuffer(
                Tensor(shape: p.shape, storage: Storage(viewOf: g.storage, offset: p.offset, count: p.count)))
        }
        grads = g
        return g
    }

    /// Puts the flat gradient block in `storage` (memory the caller provides: an MPI shared-memory
    /// window that other ranks on the node read directly) and points every parameter's gradient at
    /// its view there. A block that already exists is copied over and freed; none is allocated.
    public func moveGradients(into storage: Storage) {
        flatten()
        precondition(
            storage.count == count,
            "ParameterSet.moveGradients: \(storage.count) floats given, the gradient block has \(count)")
        if let old = grads { storage.base.update(from: old.data, count: old.count) }
        for p in all {
            p.value.setGradBuffer(
                Tensor(shape: p.shape, storage: Storage(viewOf: storage, offset: p.offset, count: p.count)))
        }
        grads = Tensor(shape: [count], storage: storage)
    }

    /// Moves the flat value block into `storage` (the node's one copy of the weights, in an MPI
    /// shared-memory window) and points every parameter at its view there, keeping whether it
    /// trains and its gradient view. Copies only `range` (all when nil): ranks sharing the block
    /// each copy their own part of the same values.
    public func moveValues(into storage: Storage, copying range: Range<Int>? = nil) {
        guard let old = values else { preconditionFailure("ParameterSet.moveValues: flatten() first") }
        precondition(
            storage.count == old.count,
            "ParameterSet.moveValues: \(storage.count) floats given, the value block has \(old.count)")
        let r = range ?? 0..<old.count
        (storage.base + r.lowerBound).update(from: old.data + r.lowerBound, count: r.count)
        for p in all {
            let t = Tensor(shape: p.shape, storage: Storage(viewOf: storage, offset: p.offset, count: p.count))
                .requiringGrad(p.value.requiresGrad)
            if let g = p.value.grad { t.setGradBuffer(g) }
            p.value = t
        }
        values = Tensor(shape: [old.count], storage: storage)
    }

    /// Zeroes every gradient: one memset per run of trained parameters in the flat block. Frozen
    /// parameters' gradients are never written, so their pages are never touched (the block is
    /// allocated on demand) and a frozen reference UNet costs no gradient memory.
    public func zeroGrads() {
        guard let grads else { all.forEach { $0.value.zeroGrad() }; return }
        var i = 0
        while i < all.count {
            guard all[i].value.requiresGrad else { i += 1; continue }
            var j = i
            while j + 1 < all.count && all[j + 1].value.requiresGrad { j += 1 }
            let lo = all[i].offset, hi = all[j].offset + all[j].count
            (grads.data + lo).update(repeating: 0, count: hi - lo)
            i = j + 1
        }
    }

    /// Parameters not in `trained` stop requiring gradients (call after flatten()): backward then
    /// neither computes nor stores theirs, and a part that is wholly frozen (the VAE; a reference
    /// UNet that does not train) records no graph at all.
    public func freeze(except trained: [Parameter]) {
        precondition(values != nil, "ParameterSet.freeze: flatten() first (flatten makes new leaves)")
        let keep = Set(trained.map(\.name))
        // A frozen parameter's gradient is left as it is (zeroGrads no longer visits it, and touching
        // it would make the on-demand pages resident): the optimizer, the norm and the reducer read
        // only the trained ranges.
        for p in all { p.value.requiringGrad(keep.contains(p.name)) }
    }

    /// The indices of the parameters that require gradients, when they are one contiguous run of
    /// registration order (then their gradients are one contiguous range of the flat block); nil
    /// when none do or they are scattered.
    public var trainedRange: Range<Int>? {
        guard let first = all.firstIndex(where: { $0.value.requiresGrad }),
            let last = all.lastIndex(where: { $0.value.requiresGrad })
        else { return nil }
        return all[first...last].allSatisfy({ $0.value.requiresGrad }) ? first..<(last + 1) : nil
    }

    /// A view of the flat gradient block covering parameters `range` (registration order), which
    /// are contiguous in it: what a reducer of only the trained parameters works on.
    public func gradients(of range: Range<Int>) -> Tensor {
        let g = enableGradients()
        guard !range.isEmpty else {
            return Tensor(shape: [0], storage: Storage(viewOf: g.storage, offset: 0, count: 0))
        }
        let lo = all[range.lowerBound].offset, hi = all[range.upperBound - 1].offset + all[range.upperBound - 1].count
        return Tensor(shape: [hi - lo], storage: Storage(viewOf: g.storage, offset: lo, count: hi - lo))
    }

    /// Before backward from `loss`: each parameter that backward will reach calls `ready(i)` when
    /// its gradient is final; the others (frozen, or not used by this loss) call it right away —
    /// their gradient is already final, and a reducer waiting for them would hold back every
    /// bucket they share (PyTorch DDP's `find_unused_parameters`).
    public func handOverGradients(of loss: Tensor, to ready: @escaping (Int) -> Void) {
        let reached = loss.reachableLeaves()
        for (i, p) in all.enumerated() {
            if reached.contains(ObjectIdentifier(p.value)) { p.value.onGradientReady = { ready(i) } } else { ready(i) }
        }
    }

    /// Removes the hooks `handOverGradients` set.
    public func removeGradientHooks() { for p in all { p.value.onGradientReady = nil } }

    /// The parameters whose names start with `prefix`.
    public func with(prefix: String) -> [Parameter] { all.filter { $0.name.hasPrefix(prefix) } }
}

/// Where a module registers its parameters: a set plus a dotted prefix, and the seed that makes
/// initial values a pure function of (seed, parameter name).
public struct Scope {
    public let set: ParameterSet
    public let prefix: String
    public let seed: UInt64

    public init(_ set: ParameterSet, prefix: String = "", seed: UInt64 = 0) {
        self.set = set; self.prefix = prefix; self.seed = seed
    }

    /// A child scope: `scope / "down_blocks" / 0`.
    public static func / (s: Scope, name: String) -> Scope {
        Scope(s.set, prefix: s.prefix.isEmpty ? name : s.prefix + "." + name, seed: s.seed)
    }
    public static func / (s: Scope, i: Int) -> Scope { s / String(i) }

    public func fullName(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }

    /// Registers a parameter initialised by `initial`.
    public func param(_ name: String, _ shape: [Int], _ initial: Init) -> Parameter {
        let full = fullName(name)
        return set.register(full, initial.make(shape, key: CounterRNG.key(seed, stableHash(full))))
    }
}

/// How a parameter starts. PyTorch's defaults, so a model trained from scratch behaves like one
/// built by the published code.
public enum Init {
    case zeros, ones
    /// U(−bound, bound).
    case uniform(Float)
    /// nn.Conv2d / nn.Linear weights and biases: U(±1/√fan_in) (kaiming_uniform with a = √5).
    case fanIn(Int)

    func make(_ shape: [Int], key: UInt64) -> Tensor {
        switch self {
        case .zeros: return Tensor(zeros: shape)
        case .ones: return Tensor(repeating: 1, shape: shape)
        case .uniform(let b): return Tensor.uniform(shape, seed: key, in: -b...b)
        case .fanIn(let n):
            let b = 1 / Float(max(n, 1)).squareRoot(); return Tensor.uniform(shape, seed: key, in: -b...b)
        }
    }
}

/// FNV-1a: a hash of a name that is the same in every process and every run.
public func stableHash(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
}
