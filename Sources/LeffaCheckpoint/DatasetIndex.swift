// The dataset index of the leffa header (layout in CheckpointHeader.swift and Checkpoints.md):
// every group's dataset count and every dataset's shape, digest and raw-data offset, so a reader
// neither walks nor opens HDF5 datasets and reads their bytes straight from the file.

/// One dataset as the index records it.
struct IndexedDataset {
    var name: String
    var shape: [Int]
    var digest: UInt64
    /// Absolute file offset of the raw data (0 for an empty dataset).
    var offset: Int
    var byteCount: Int { 4 * shape.reduce(1, *) }
}

struct DatasetIndex {
    /// Group path → datasets in byte order of names; `groups` lists the paths in byte order.
    var groups: [String]
    var datasets: [String: [IndexedDataset]]

    init(groups: [String: [IndexedDataset]]) {
        self.groups = groups.keys.sorted(by: utf8Less)
        datasets = groups.mapValues { $0.sorted { utf8Less($0.name, $1.name) } }
    }

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        u64(UInt64(groups.count))
        for g in groups { str(g); u64(UInt64(datasets[g]!.count)) }
        for g in groups {
            for d in datasets[g]! {
                str(d.name); u64(UInt64(d.shape.count))
                for x in d.shape { u64(UInt64(x)) }
                u64(d.digest); u64(UInt64(d.offset))
            }
        }
        return out
    }

    /// Parses encoded bytes; nil when they do not form an index (lengths past the end, implausible
    /// counts, bytes left over, a name twice).
    init?(_ bytes: ArraySlice<UInt8>) {
        var at = bytes.startIndex
        func u64() -> UInt64? {
            guard bytes.endIndex - at >= 8 else { return nil }
            defer { at += 8 }
            return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at - bytes.startIndex, as: UInt64.self)) }
        }
        /// Counts, lengths and dimensions: plausible ones only (below 2³¹).
        func int() -> Int? { u64().flatMap { $0 <= UInt64(Int32.max) ? Int($0) : nil } }
        func str() -> String? {
            guard let n = int(), bytes.endIndex - at >= n else { return nil }
            defer { at += n }
            return String(decoding: bytes[at..<(at + n)], as: UTF8.self)
        }
        guard let groupCount = int() else { return nil }
        var counts: [(String, Int)] = []
        for _ in 0..<groupCount {
            guard let g = str(), let c = int() else { return nil }
            counts.append((g, c))
        }
        var datasets: [String: [IndexedDataset]] = [:]
        for (g, c) in counts {
            guard datasets[g] == nil else { return nil }
            var list: [IndexedDataset] = []
            var seen = Set<String>()
            for _ in 0..<c {
                guard let name = str(), seen.insert(name).inserted, let rank = int(), rank <= 32 else { return nil }
                var shape: [Int] = []
                var count = 1
                for _ in 0..<rank {
                    guard let x = int() else { return nil }
                    let (p, overflow) = count.multipliedReportingOverflow(by: x)
                    guard !overflow, p <= 1 << 48 else { return nil }
                    shape.append(x); count = p
                }
                // File offsets pass 2³¹ in any checkpoint over 2 GB.
                guard let digest = u64(), let offset = u64(), offset <= 1 << 56 else { return nil }
                list.append(IndexedDataset(name: name, shape: shape, digest: digest, offset: Int(offset)))
            }
            datasets[g] = list
        }
        guard at == bytes.endIndex else { return nil }
        self.init(groups: datasets)
    }

    /// True when the non-empty datasets' data are exactly the header's raw-data extents.
    func matches(_ extents: [(offset: Int, length: Int)]) -> Bool {
        let mine = datasets.values.joined().filter { $0.byteCount > 0 }.map { ($0.offset, $0.byteCount) }
            .sorted { $0.0 < $1.0 }
        return mine.count == extents.count && zip(mine, extents).allSatisfy { $0.0 == $1.offset && $0.1 == $1.length }
    }

    /// The manifest's records (CheckpointFormat.swift) from the index.
    var records: [DatasetRecord] {
        groups.flatMap { g in datasets[g]!.map { DatasetRecord(group: g, name: $0.name, shape: $0.shape, digest: $0.digest) } }
    }
}
