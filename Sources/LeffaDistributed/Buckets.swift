// Gradient buckets: which parameters' gradients are all-reduced together. A pure function of the
// parameter sizes and named size limits, unit-tested on its own (PyTorch DDP's bucket assignment is
// the model). Not the reduction itself: that is GradientReducer.swift.
//
// Parameters are registered in forward order and their gradients live in one flat block, parameter
// i at [offset_i, offset_i + size_i). Backward produces gradients roughly in reverse registration
// order, so buckets are filled from the LAST parameter backwards: bucket 0 holds the last
// parameters and is ready first, and every bucket is one contiguous range of the flat block.
import Foundation

/// A run of consecutive parameters whose gradients are reduced in one collective.
public struct Bucket: Equatable, Sendable, CustomStringConvertible {
    /// Position in reduction order: bucket 0 is reduced first on every rank.
    public let index: Int
    /// Parameter indices (registration numbering) in the order they joined: descending.
    public let parameters: [Int]
    /// The elements of the flat gradient block this bucket covers.
    public let range: Range<Int>

    public init(index: Int, parameters: [Int], range: Range<Int>) {
        self.index = index; self.parameters = parameters; self.range = range
    }
    public var count: Int { range.count }
    public var bytes: Int { range.count * MemoryLayout<Float>.stride }
    public var description: String {
        "bucket \(index): params \(parameters.last ?? -1)...\(parameters.first ?? -1), elements \(range), \(bytes) B"
    }
}

/// Named limits of the bucket assignment.
public enum BucketLimits {
    /// DDP's default (`bucket_cap_mb=25`): large enough that per-collective latency is amortised,
    /// small enough that the first all-reduce starts long before backward ends.
    public static let defaultCapBytes = 25 << 20
    /// Overrides the cap, in MiB (a decimal number: `LEFFA_BUCKET_MB=0.5` is 512 KiB).
    public static let environmentKey = "LEFFA_BUCKET_MB"

    /// The cap from `LEFFA_BUCKET_MB` if set, else the default.
    public static func capBytes(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Int {
        guard let s = environment[environmentKey] else { return defaultCapBytes }
        guard let mb = Double(s.trimmingCharacters(in: .whitespaces)), mb.isFinite, mb > 0, mb <= 1_048_576 else {
            throw DistributedError.setting(
                name: environmentKey, value: s, expected: "a positive number of MiB, e.g. 25 or 0.5")
        }
        return max(MemoryLayout<Float>.stride, Int(mb * Double(1 << 20)))
    }
}

/// Splits parameters of the given element counts (float32, registration order) into buckets.
///
/// Walks the parameters from the last to the first and closes the current bucket before a
/// parameter that would push it over the cap, so a bucket never exceeds the cap unless a single
/// parameter does (it then gets a bucket of its own). DDP closes a bucket only after it passes the
/// cap; closing before keeps the reducer's scratch memory bounded by the cap.
/// `firstCapBytes` (DDP uses 1 MiB) limits bucket 0 alone, so the first collective starts sooner.
/// Zero-sized parameters join the current bucket (they must still be marked ready).
/// `segments` (parameter index ranges covering all parameters, default one) are walked in the order
/// given, each from its last parameter to its first, and a bucket never spans two: for models
/// whose backward finishes one part before the next (Leffa's generative UNet, registered first,
/// then the reference UNet), so bucket 0 is the part backward reaches first.
public func assignBuckets(
    sizes: [Int], capBytes: Int = BucketLimits.defaultCapBytes, firstCapBytes: Int? = nil,
    segments: [Range<Int>]? = nil
) -> [Bucket] {
    precondition(capBytes > 0, "assignBuckets: capBytes must be positive, got \(capBytes)")
    precondition(firstCapBytes.map { $0 > 0 } ?? true, "assignBuckets: firstCapBytes must be positive")
    var offsets = [Int](repeating: 0, count: sizes.count)
    var total = 0
    for (i, n) in sizes.enumerated() {
        precondition(n >= 0, "assignBuckets: parameter \(i) has negative size \(n)")
        offsets[i] = total
        total += n
    }
    let elementBytes = MemoryLayout<Float>.stride
    var buckets: [Bucket] = []
    var current: [Int] = []
    var currentBytes = 0
    func close() {
        guard let hi = current.first, let lo = current.last else { return }
        buckets.append(
            Bucket(index: buckets.count, parameters: current, range: offsets[lo]..<(offsets[hi] + sizes[hi])))
        current = []; currentBytes = 0
    }
    let walk = segments ?? [sizes.indices]
    precondition(
        walk.flatMap { Array($0) }.sorted() == Array(sizes.indices),
        "assignBuckets: segments \(walk) must cover parameters 0..<\(sizes.count) once each")
    for segment in walk {
        for i in segment.reversed() {
            let b = sizes[i] * elementBytes
            let cap = buckets.isEmpty ? (firstCapBytes ?? capBytes) : capBytes
            if !current.isEmpty && currentBytes + b > cap { close() }
            current.append(i)
            currentBytes += b
        }
        close()
    }
    return buckets
}
