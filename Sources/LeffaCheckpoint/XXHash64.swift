// XXH64 (seed 0 unless given), the checksum of every checkpoint dataset and of the checkpoint's
// manifest. Chosen because it runs at memory speed (a 9 GB checkpoint costs about a second), it
// is a published, fixed algorithm (Python's `xxhash.xxh64` gives the same numbers, so a file can
// be checked without leffa), and it catches flipped bits and shuffled blocks. Not a cryptographic
// hash: it protects against damage, not against someone forging a file.
//
// Streaming: `update` takes the bytes in any number of pieces; `digest` gives the same value as
// hashing them in one piece.

public struct XXHash64 {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private let seed: UInt64
    private var v1, v2, v3, v4: UInt64
    private var total: UInt64 = 0
    /// Bytes not yet forming a whole 32-byte stripe.
    private var tail: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var tailCount = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
    }

    /// The hash of `bytes` in one call.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var h = XXHash64(seed: seed)
        h.update(bytes)
        return h.digest()
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    @inline(__always)
    private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always)
    private static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        (acc ^ round(0, v)) &* p1 &+ p4
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always)
    private static func load64(_ p: UnsafeRawPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return }
        var n = bytes.count
        total &+= UInt64(n)
        // Complete a stripe begun by an earlier call.
        if tailCount > 0 {
            let take = min(32 - tailCount, n)
            withUnsafeMutableBytes(of: &tail) { t in
                (t.baseAddress! + tailCount).copyMemory(from: p, byteCount: take)
            }
            tailCount += take; p += take; n -= take
            if tailCount < 32 { return }
            let t = tail
            v1 = Self.round(v1, UInt64(littleEndian: t.0)); v2 = Self.round(v2, UInt64(littleEndian: t.1))
            v3 = Self.round(v3, UInt64(littleEndian: t.2)); v4 = Self.round(v4, UInt64(littleEndian: t.3))
            tailCount = 0
        }
        // Whole stripes straight from the caller's memory: four independent lanes.
        var a = v1, b = v2, c = v3, d = v4
        while n >= 32 {
            a = Self.round(a, Self.load64(p, 0)); b = Self.round(b, Self.load64(p, 8))
            c = Self.round(c, Self.load64(p, 16)); d = Self.round(d, Self.load64(p, 24))
            p += 32; n -= 32
        }
        v1 = a; v2 = b; v3 = c; v4 = d
        if n > 0 {
            withUnsafeMutableBytes(of: &tail) { t in t.baseAddress!.copyMemory(from: p, byteCount: n) }
            tailCount = n
        }
    }

    public func digest() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = Self.merge(h, v1); h = Self.merge(h, v2); h = Self.merge(h, v3); h = Self.merge(h, v4)
        } else {
            h = seed &+ Self.p5
        }
        h &+= total
        var t = tail
        withUnsafeBytes(of: &t) { raw in
            let p = raw.baseAddress!
            var i = 0
            while i + 8 <= tailCount {
                h ^= Self.round(0, Self.load64(p, i))
                h = Self.rotl(h, 27) &* Self.p1 &+ Self.p4
                i += 8
            }
            if i + 4 <= tailCount {
                h ^= UInt64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self))) &* Self.p1
                h = Self.rotl(h, 23) &* Self.p2 &+ Self.p3
                i += 4
            }
            while i < tailCount {
                h ^= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                i += 1
            }
        }
        h ^= h >> 33; h &*= Self.p2
        h ^= h >> 29; h &*= Self.p3
        h ^= h >> 32
        return h
    }
}
