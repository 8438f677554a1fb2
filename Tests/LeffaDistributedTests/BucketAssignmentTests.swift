// assignBuckets on its own: worked examples, limits, and invariants over random size lists.
import XCTest
@testable import LeffaDistributed
import LeffaTensor

final class BucketAssignmentTests: XCTestCase {
    /// Float32: 4 bytes per element.
    func bytes(_ elements: Int) -> Int { elements * 4 }

    func testWorkedExampleFillsFromTheLastParameter() {
        // Cap 200 B = 50 floats. From the end: [40] (30 would overflow), [30, 20] (exactly 50), [10].
        let b = assignBuckets(sizes: [10, 20, 30, 40], capBytes: 200)
        XCTAssertEqual(b.map(\.parameters), [[3], [2, 1], [0]])
        XCTAssertEqual(b.map(\.range), [60..<100, 10..<60, 0..<10])
        XCTAssertEqual(b.map(\.index), [0, 1, 2])
        XCTAssertEqual(b.map(\.bytes), [160, 200, 40])
    }

    func testParameterLargerThanTheCapGetsItsOwnBucket() {
        let b = assignBuckets(sizes: [5, 1000, 5, 5], capBytes: bytes(20))
        XCTAssertEqual(b.map(\.parameters), [[3, 2], [1], [0]])
        XCTAssertEqual(b[1].range, 5..<1005)
    }

    func testZeroSizedParametersJoinTheCurrentBucket() {
        let b = assignBuckets(sizes: [0, 4, 0, 0, 4, 0], capBytes: bytes(4))
        XCTAssertEqual(b.map(\.parameters), [[5, 4, 3, 2], [1, 0]])
        XCTAssertEqual(b.map(\.range), [4..<8, 0..<4])
    }

    func testFirstCapLimitsBucketZeroOnly() {
        let b = assignBuckets(sizes: [Int](repeating: 10, count: 8), capBytes: bytes(40), firstCapBytes: bytes(10))
        XCTAssertEqual(b.map(\.parameters), [[7], [6, 5, 4, 3], [2, 1, 0]])
    }

    /// Segments (the generative UNet, then the reference UNet) are walked in the order given, each
    /// from its end, and no bucket spans two.
    func testSegmentsAreWalkedInOrderEachFromItsEnd() {
        let sizes = [10, 10, 10, 10, 10]
        XCTAssertEqual(assignBuckets(sizes: sizes, capBytes: bytes(100)).map(\.parameters), [[4, 3, 2, 1, 0]])
        let b = assignBuckets(sizes: sizes, capBytes: bytes(100), segments: [0..<3, 3..<5])
        XCTAssertEqual(b.map(\.parameters), [[2, 1, 0], [4, 3]])
        XCTAssertEqual(b.map(\.range), [0..<30, 30..<50])
        XCTAssertEqual(assignBuckets(sizes: sizes, capBytes: bytes(20), segments: [0..<3, 3..<5]).map(\.parameters), [[2, 1], [0], [4, 3]])
    }

    func testEdgeCases() {
        XCTAssertEqual(assignBuckets(sizes: [], capBytes: 100), [])
        XCTAssertEqual(assignBuckets(sizes: [0], capBytes: 100).map(\.parameters), [[0]])
        XCTAssertEqual(assignBuckets(sizes: [3], capBytes: 1).map(\.range), [0..<3])
    }

    /// Every parameter once; buckets tile the block from the end; none exceeds the cap unless it
    /// holds one parameter; and none could have taken its next parameter (no premature close).
    func testInvariantsOnRandomSizes() {
        for seed in 0..<200 {
            let key = CounterRNG.key(UInt64(seed))
            let count = Int(CounterRNG.uniform(key, 0) * 60)
            let sizes = (0..<count).map { i -> Int in
                let u = CounterRNG.uniform(key, UInt64(i + 1))
                return u < 0.1 ? 0 : Int(u * u * u * 3000)
            }
            let cap = 4 * (1 + Int(CounterRNG.uniform(key, 999) * 2000))
            let buckets = assignBuckets(sizes: sizes, capBytes: cap)
            let total = sizes.reduce(0, +)
            XCTAssertEqual(buckets.flatMap(\.parameters), Array((0..<count).reversed()), "seed \(seed)")
            var end = total
            for b in buckets {
                XCTAssertEqual(b.range.upperBound, end, "seed \(seed): \(b) does not continue the previous bucket")
                end = b.range.lowerBound
                XCTAssertEqual(b.count, b.parameters.reduce(0) { $0 + sizes[$1] }, "seed \(seed)")
                XCTAssertTrue(b.bytes <= cap || b.parameters.filter { sizes[$0] > 0 }.count == 1, "seed \(seed): \(b) exceeds cap \(cap)")
                if b.index + 1 < buckets.count, let next = buckets[b.index + 1].parameters.first {
                    XCTAssertGreaterThan(b.bytes + sizes[next] * 4, cap, "seed \(seed): \(b) closed before it was full")
                }
            }
            XCTAssertEqual(end, 0, "seed \(seed): buckets do not reach the start of the block")
        }
    }

    func testCapFromEnvironment() throws {
        XCTAssertEqual(BucketLimits.defaultCapBytes, 25 * 1024 * 1024)
        XCTAssertEqual(try BucketLimits.capBytes(environment: [:]), 25 << 20)
        XCTAssertEqual(try BucketLimits.capBytes(environment: ["LEFFA_BUCKET_MB": "0.5"]), 1 << 19)
        XCTAssertEqual(try BucketLimits.capBytes(environment: ["LEFFA_BUCKET_MB": "100"]), 100 << 20)
        for bad in ["", "abc", "-1", "0", "inf"] {
            XCTAssertThrowsError(try BucketLimits.capBytes(environment: ["LEFFA_BUCKET_MB": bad])) { e in
                XCTAssertTrue("\(e)".contains("LEFFA_BUCKET_MB"), "\(e)")
            }
        }
    }
}
