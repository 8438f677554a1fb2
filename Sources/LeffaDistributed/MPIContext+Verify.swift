// Startup consistency: data that must be identical on every rank (initial weights, the config, the
// parameter list) is hashed on each rank and the hashes gathered, so a mismatch is caught before
// the first step and the error names the ranks that differ and what differs. Not a transfer of the
// data itself (broadcast it if ranks may legitimately start apart).
//
// All-gathering the 64-bit hashes (N × 8 bytes) instead of all-reducing their min and max costs the
// same and tells every rank WHICH ranks differ; every rank then throws the same error, so none is
// left waiting in a later collective.
import Foundation
import LeffaTensor

/// A 64-bit content hash that is the same on every machine and for every thread count.
public enum ContentHash {
    /// Data is hashed in fixed chunks (in parallel), then chunk hashes are combined in chunk order,
    /// so the result does not depend on `Parallel.threads`.
    public static let chunkBytes = 1 << 20

    public static func of(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let n = bytes.count
        guard n > 0, let base = bytes.baseAddress else { return CounterRNG.mix(0x4C45_4646_4100_0000) }
        let chunks = (n + chunkBytes - 1) / chunkBytes
        let hashes = UnsafeMutablePointer<UInt64>.allocate(capacity: chunks)
        defer { hashes.deallocate() }
        Parallel.for(chunks) { range in
            for c in range {
                let lo = c * chunkBytes
                hashes[c] = hashChunk(base + lo, count: min(chunkBytes, n - lo), seed: UInt64(c))
            }
        }
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15
        for c in 0..<chunks { h = CounterRNG.mix(h ^ hashes[c]) }
        return CounterRNG.mix(h ^ UInt64(n))
    }

    public static func of(_ values: UnsafeBufferPointer<Float>) -> UInt64 { of(UnsafeRawBufferPointer(values)) }

    public static func of(_ string: String) -> UInt64 {
        var s = string
        return s.withUTF8 { of(UnsafeRawBufferPointer($0)) }
    }

    /// Four independent lanes of xor-multiply-rotate over 8-byte words (each step is a bijection of
    /// the lane state, so changing one word always changes its lane), then a finaliser per lane.
    @inline(__always)
    static func hashChunk(_ p: UnsafeRawPointer, count n: Int, seed: UInt64) -> UInt64 {
        let m: UInt64 = 0x9FB2_1C65_1E98_DF25
        @inline(__always) func step(_ h: UInt64, _ w: UInt64) -> UInt64 {
            let x = (h ^ w) &* m
            return (x << 29) | (x >> 35)
        }
        var h0 = seed &+ 0x243F_6A88_85A3_08D3, h1 = seed &+ 0x1319_8A2E_0370_7344
        var h2 = seed &+ 0xA409_3822_299F_31D0, h3 = seed &+ 0x082E_FA98_EC4E_6C89
        let words = n / 8
        var i = 0
        while i + 4 <= words {
            h0 = step(h0, p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
            h1 = step(h1, p.loadUnaligned(fromByteOffset: i * 8 + 8, as: UInt64.self))
            h2 = step(h2, p.loadUnaligned(fromByteOffset: i * 8 + 16, as: UInt64.self))
            h3 = step(h3, p.loadUnaligned(fromByteOffset: i * 8 + 24, as: UInt64.self))
            i += 4
        }
        while i < words { h0 = step(h0, p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)); i += 1 }
        var tail: UInt64 = 0
        for b in stride(from: n - 1, through: words * 8, by: -1) {
            tail = (tail << 8) | UInt64(p.load(fromByteOffset: b, as: UInt8.self))
        }
        h1 = step(h1, tail ^ UInt64(n & 7))
        let a = CounterRNG.mix(h0), b = CounterRNG.mix(h1), c = CounterRNG.mix(h2), d = CounterRNG.mix(h3)
        return CounterRNG.mix(a ^ (b << 1 | b >> 63) ^ (c << 2 | c >> 62) ^ (d << 3 | d >> 61))
    }
}

extension MPIContext {
    /// Throws `DistributedError.mismatch` (on every rank) unless `bytes` are identical on all ranks.
    public func verifyIdentical(_ bytes: UnsafeRawBufferPointer, what: String) throws {
        let groups = rankGroups([ContentHash.of(bytes), UInt64(bytes.count)])
        guard groups.count > 1 else { return }
        let sizes = allgather([Int64(bytes.count)])
        let detail =
            Set(sizes).count > 1
            ? "sizes in bytes by rank: " + sizes.map(String.init).joined(separator: ", ")
            : "same size (\(bytes.count) bytes), different contents"
        throw DistributedError.mismatch(what: what, groups: groups, detail: detail)
    }

    public func verifyIdentical(_ values: UnsafeBufferPointer<Float>, what: String) throws {
        try verifyIdentical(UnsafeRawBufferPointer(values), what: what)
    }

    /// A flat block (e.g. all weights) as a tensor.
    public func verifyIdentical(_ tensor: Tensor, what: String) throws {
        try verifyIdentical(UnsafeBufferPointer(tensor.buffer), what: what)
    }

    /// Named blocks (e.g. one per parameter): the error names the first blocks that differ.
    public func verifyIdentical(blocks: [(name: String, bytes: UnsafeRawBufferPointer)], what: String) throws {
        let names = blocks.map(\.name).joined(separator: "\n")
        let listGroups = rankGroups([UInt64(blocks.count), ContentHash.of(names)])
        if listGroups.count > 1 {
            let counts = allgather([Int64(blocks.count)])
            throw DistributedError.mismatch(
                what: what, groups: listGroups,
                detail: "the lists of names differ (counts by rank: \(counts.map(String.init).joined(separator: ", ")))"
            )
        }
        let mine = blocks.map { ContentHash.of($0.bytes) }
        let all = allgather(mine)
        let b = blocks.count
        let differing = (0..<b).filter { j in (1..<size).contains { all[$0 * b + j] != all[j] } }
        guard !differing.isEmpty else { return }
        let groups = groupRanks((0..<size).map { r in Array(all[(r * b)..<((r + 1) * b)]) })
        let shown = differing.prefix(5).map { blocks[$0].name }.joined(separator: ", ")
        throw DistributedError.mismatch(
            what: what, groups: groups,
            detail: "\(differing.count) of \(b) differ, first: \(shown)")
    }

    /// A string (e.g. the resolved config): the error shows the first line that differs.
    public func verifyIdentical(_ string: String, what: String) throws {
        let groups = rankGroups([ContentHash.of(string), UInt64(string.utf8.count)])
        guard groups.count > 1 else { return }
        // Every rank learns each group's version (group order is the same everywhere).
        let versions = groups.map { broadcast(string, root: $0[0]) }
        let a = versions[0].split(separator: "\n", omittingEmptySubsequences: false)
        var detail = ""
        for (gi, v) in versions.enumerated().dropFirst() {
            let b = v.split(separator: "\n", omittingEmptySubsequences: false)
            let line = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
            let la = line < a.count ? String(a[line]) : "<end>", lb = line < b.count ? String(b[line]) : "<end>"
            detail +=
                (detail.isEmpty ? "" : "; ")
                + "line \(line + 1): rank \(groups[0][0]) has \"\(la.prefix(120))\", rank \(groups[gi][0]) has \"\(lb.prefix(120))\""
        }
        throw DistributedError.mismatch(what: what, groups: groups, detail: detail)
    }

    /// Ranks grouped by equal `signature` (the same count on every rank), largest group first.
    func rankGroups(_ signature: [UInt64]) -> [[Int]] {
        let all = allgather(signature), k = signature.count
        return groupRanks((0..<size).map { r in Array(all[(r * k)..<((r + 1) * k)]) })
    }
}

/// Groups indices with equal values; largest group first, ties by lowest rank.
func groupRanks(_ signatures: [[UInt64]]) -> [[Int]] {
    var groups: [[Int]] = []
    var keys: [[UInt64]] = []
    for (r, s) in signatures.enumerated() {
        if let g = keys.firstIndex(of: s) { groups[g].append(r) } else { keys.append(s); groups.append([r]) }
    }
    return groups.sorted { $0.count != $1.count ? $0.count > $1.count : $0[0] < $1[0] }
}
