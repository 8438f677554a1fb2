// The scaling model behind `leffa-bench scaling`: the time of one data-parallel training step on N
// ranks, from quantities measured on this machine (compute per sample, the optimizer's fixed cost,
// the shared-memory reduction's cost per byte) and a network's latency and bandwidth.
//
//   step(N) = b·c·share + opt/L·share + exposed communication
//
// b samples per rank, c seconds of forward + backward per sample, opt the AdamW pass over the
// trained block (sharded over the L ranks of a node), share = max(1, ranks·threads / cores) when
// ranks share a machine's cores (only the checks on this machine; the cluster rows give every rank
// its own cores). Communication, for G gradient bytes:
//  - shared memory on a node of L ranks: a reduce-scatter (each rank then updates its shard of the
//    node's one copy of the training state, so nothing is gathered). Each rank reads G bytes and
//    writes G/L whatever L is, so its time is G·k with k the seconds per byte measured at L = 2,
//    unless the node's memory bus saturates first: (L + 1)·G / bus bandwidth;
//  - a ring all-reduce over M participants: 2(M−1)/M · bytes/B + 2(M−1)·α per message;
//  - overlapped buckets (every rank one ring member; the L ranks of a node share its link):
//    all-reduce of G in buckets, exposed = max(all-reduce − the backward left to hide it, one bucket);
//  - hierarchical (Horovod's HOROVOD_HIERARCHICAL_ALLREDUCE): shared memory inside the node, then
//    one ring over the M nodes in which each node's L ranks each carry G/L (so the link carries G),
//    after backward (not overlapped).
// What it leaves out: stragglers, the network's contention beyond its link bandwidth, the data
// loader (the trainer prefetches), checkpoints.
import Foundation

struct ScalingModel {
    /// Forward + backward seconds per sample on one rank.
    var computePerSample: Double
    /// The optimizer step (clip + AdamW + EMA) over the whole trained block on one rank.
    var optimizerSeconds: Double
    /// Gradient bytes (the trained parameters × 4).
    var gradientBytes: Double
    /// Shared-memory reduce-scatter seconds per gradient byte at 2 ranks.
    var sharedSecondsPerByte: Double
    /// A node's memory bandwidth in bytes/s (the bound when many ranks reduce at once).
    var nodeMemoryBytesPerSecond = 100e9
    /// Fraction of a sample's compute that is backward (what overlapped buckets can hide behind).
    var backwardFraction = 2.0 / 3.0
    /// Bucket size in bytes.
    var bucketBytes = 25.0 * 1_048_576

    struct Network { var name: String; var bytesPerSecond: Double; var latency: Double }

    /// Ring all-reduce of `bytes` over `members`, `messages` messages, through a link of `net`
    /// shared by `perLink` members.
    static func ring(_ bytes: Double, members: Int, messages: Double, perLink: Int, _ net: Network) -> Double {
        guard members > 1 else { return 0 }
        let m = Double(members)
        return 2 * (m - 1) / m * bytes * Double(perLink) / net.bytesPerSecond + 2 * (m - 1) * net.latency * messages
    }

    /// Shared-memory reduction of the whole block among L ranks of a node.
    func shared(_ L: Int) -> Double {
        L > 1 ? max(gradientBytes * sharedSecondsPerByte, Double(L + 1) * gradientBytes / nodeMemoryBytesPerSecond) : 0
    }

    /// Step seconds with overlapped buckets over all N ranks (L per node share a link).
    func bucketStep(ranks N: Int, perNode L: Int, batch b: Int, net: Network, share: Double = 1) -> Double {
        let compute = Double(b) * computePerSample * share
        let messages = (gradientBytes / bucketBytes).rounded(.up)
        let allReduce = Self.ring(gradientBytes, members: N, messages: messages, perLink: min(L, N), net)
        let oneBucket = allReduce / messages
        let exposed = N > 1 ? max(allReduce - backwardFraction * compute, oneBucket) : 0
        return compute + optimizerSeconds * share + exposed
    }

    /// Step seconds with the hierarchical reduction: shared memory on each node, a ring over nodes.
    func hierarchicalStep(ranks N: Int, perNode L: Int, batch b: Int, net: Network, share: Double = 1) -> Double {
        let nodes = max(1, N / L), local = min(L, N)
        let compute = Double(b) * computePerSample * share
        let messages = (gradientBytes / Double(local) / bucketBytes).rounded(.up)
        let across = Self.ring(gradientBytes / Double(local), members: nodes, messages: messages, perLink: local, net)
        return compute + optimizerSeconds / Double(local) * share + shared(local) + across
    }
}
