// Tensor: a float32 array, contiguous in row-major (NCHW for images), with an optional autograd
// node. Every op allocates its output; views share storage only for reshape.
import Foundation

public final class Tensor: @unchecked Sendable {
    /// Dimensions, outermost first: (B, C, H, W) for images, (B, N, C) for token sequences.
    public let shape: [Int]
    public let storage: Storage
    /// Whether backward should produce a gradient for this tensor.
    public internal(set) var requiresGrad: Bool
    /// The accumulated gradient (same shape) after `backward()`; parameters keep theirs.
    public var grad: Tensor?
    /// True when `grad`'s memory belongs to this tensor and may be added into in place.
    var gradOwned = false
    /// How this tensor was computed; nil for leaves (inputs, parameters).
    var node: Node?
    /// For a leaf: called by `backward()` once the leaf's gradient for this pass is complete (every
    /// op that read it has contributed). Data parallelism starts a gradient bucket's all-reduce
    /// from here, while the rest of backward runs.
    public var onGradientReady: (() -> Void)?

    public init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in \(shape)")
        precondition(
            storage.count == shape.reduce(1, *),
            "Tensor: shape \(shape) needs \(shape.reduce(1, *)) elements, storage has \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// Zeros.
    public convenience init(zeros shape: [Int], requiresGrad: Bool = false) {
        self.init(shape: shape, storage: Storage(count: shape.reduce(1, *)), requiresGrad: requiresGrad)
    }

    /// From values in row-major order.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        precondition(
            values.count == shape.reduce(1, *),
            "Tensor: \(values.count) values do not fill shape \(shape)")
        self.init(zeros: shape, requiresGrad: requiresGrad)
        values.withUnsafeBufferPointer { storage.base.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A tensor filled with one value.
    public convenience init(repeating value: Float, shape: [Int], requiresGrad: Bool = false) {
        self.init(zeros: shape, requiresGrad: requiresGrad)
        if value != 0 { storage.base.update(repeating: value, count: count) }
    }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var data: UnsafeMutablePointer<Float> { storage.base }
    public var buffer: UnsafeMutableBufferPointer<Float> { storage.buffer }
    public var scalars: [Float] { Array(buffer) }
    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item: tensor of shape \(shape) has \(count) elements, expected 1")
        return data[0]
    }
    public subscript(_ i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// Marks a leaf as trainable: backward will accumulate into `grad`.
    @discardableResult
    public func requiringGrad(_ on: Bool = true) -> Tensor {
        precondition(node == nil, "requiringGrad: only leaves can be marked, this tensor was computed by \(node!.op)")
        requiresGrad = on
        return self
    }

    /// A copy with its own storage and no autograd history.
    public func copy() -> Tensor {
        let t = Tensor(zeros: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// The same values, cut from the graph (no gradient flows back through it).
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// Dimension `d`, negative counting from the end.
    public func dim(_ d: Int) -> Int { shape[d < 0 ? rank + d : d] }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = scalars.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(count > 8 ? ", …" : "")]"
    }
}

// MARK: - Shape errors

/// Stops with a message that names the op and the shapes involved: a shape mismatch is a bug in
/// the caller, and a precise message is what makes it a quick one to fix.
@inline(__always)
public func shapeCheck(
    _ condition: @autoclosure () -> Bool, _ op: String, _ shapes: [Int]...,
    expected: @autoclosure () -> String = "", file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() {
        let list = shapes.map { "\($0)" }.joined(separator: " and ")
        let why = expected()
        fatalError(
            "\(op): incompatible shapes \(list)\(why.isEmpty ? "" : ": expected \(why)")", file: file, line: line)
    }
}

// MARK: - Deterministic random numbers

/// Counter-based random numbers: value i of stream `seed` is a pure function of (seed, i), so data
/// and initialisation never depend on threads, ranks or call order.
public enum CounterRNG {
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        // SplitMix64 finaliser.
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// 64 random bits for (key, counter).
    @inline(__always)
    public static func bits(_ key: UInt64, _ counter: UInt64) -> UInt64 {
        mix(mix(key) ^ counter &* 0xD6E8_FEB8_6659_FD93)
    }
    /// Uniform in [0, 1).
    @inline(__always)
    public static func uniform(_ key: UInt64, _ counter: UInt64) -> Float {
        Float(bits(key, counter) >> 40) * (1.0 / Float(1 << 24))
    }
    /// Standard normal (Box–Muller on two uniforms of the counter).
    @inline(__always)
    public static func normal(_ key: UInt64, _ counter: UInt64) -> Float {
        let r = bits(key, counter)
        let u1 = (Double(r >> 40) + 0.5) / Double(1 << 24)
        let u2 = Double((r >> 16) & 0xFF_FFFF) / Double(1 << 24)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
    /// Combines several keys (e.g. seed, step, sample index) into one.
    public static func key(_ parts: UInt64...) -> UInt64 { parts.reduce(0x5EED) { mix($0 ^ $1) } }
}

extension Tensor {
    /// Standard normal values times `scale`, from stream `seed`.
    public static func randn(_ shape: [Int], seed: UInt64, scale: Float = 1, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        let p = t.data
        Parallel.for(t.count, grain: 4096) { r in for i in r { p[i] = scale * CounterRNG.normal(seed, UInt64(i)) } }
        return t
    }
    /// Uniform values in [lo, hi), from stream `seed`.
    public static func uniform(
        _ shape: [Int], seed: UInt64, in range: ClosedRange<Float> = 0...1, requiresGrad: Bool = false
    ) -> Tensor {
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        let p = t.data, lo = range.lowerBound, w = range.upperBound - range.lowerBound
        Parallel.for(t.count, grain: 4096) { r in for i in r { p[i] = lo + w * CounterRNG.uniform(seed, UInt64(i)) } }
        return t
    }
}
