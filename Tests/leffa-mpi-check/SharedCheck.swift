// The shared-memory reduction: bit for bit the ordered sum, only inside the range, every step. The
// node's shared state: the ranks' shards tile the block, and what each writes, every rank reads.
import ArgumentParser
import Foundation
import LeffaDistributed
import LeffaTensor

struct SharedCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "shared", abstract: "Shared-memory gradient reduction equals the ordered sum, bit for bit.")
    @Option var count = 300_007
    @Option var steps = 3
    var summary = ""

    mutating func run() throws {
        let h = try Harness("shared")
        let ctx = h.ctx
        if let why = SharedBlocks.unavailableReason(context: ctx, count: count, acrossNodes: true) { h.check(false, "unavailable: \(why)") }
        try check(h, ctx)
        // The blocks' users are gone: the window must be freed (a retain cycle would keep it).
        h.check(SharedWindow.alive == 0, "\(SharedWindow.alive) shared window(s) still allocated after their users were released")
        h.done("\(summary)")
    }

    mutating func check(_ h: Harness, _ ctx: MPIContext) throws {
        let n = ctx.size
        let state = try SharedState(context: ctx, count: count, blocks: 2)
        let blocks = try SharedBlocks(context: ctx, count: count, keepingAlive: state)
        let block = blocks.block
        h.check(SharedWindow.alive == 2, "\(SharedWindow.alive) windows alive, expected 2")
        h.check(block.count == count && (0..<count).allSatisfy { block.base[$0] == 0 }, "the gradient block does not start zeroed")
        // A sub-range with odd ends, as a trained range inside the flat block.
        let range = 37..<(count - 11)
        var orderSensitive = 0
        for step in 0..<steps {
            let average = step % 2 == 0, gather = step != 1
            let all = (0..<n).map { rankData(count, rank: $0, seed: 21, step: step, wideRange: true) }
            var expected = [Float](repeating: 0, count: count)
            if blocks.nodes == 1 {
                withPointers(all) { ptrs in expected.withUnsafeMutableBufferPointer { OrderedSum.sum(parts: ptrs, count: count, into: $0.baseAddress!, dividingBy: average ? n : nil) } }
            } else {
                // Hierarchical: each node's ranks in order, then the nodes (2 nodes: a + b, exact
                // whichever way MPI adds), then ÷ N.
                let L = blocks.nodeSize
                let nodeSums = (0..<blocks.nodes).map { k -> [Float] in
                    var out = [Float](repeating: 0, count: count)
                    withPointers(Array(all[(k * L)..<((k + 1) * L)])) { ptrs in out.withUnsafeMutableBufferPointer { OrderedSum.sum(parts: ptrs, count: count, into: $0.baseAddress!) } }
                    return out
                }
                withPointers(nodeSums) { ptrs in expected.withUnsafeMutableBufferPointer { OrderedSum.sum(parts: ptrs, count: count, into: $0.baseAddress!) } }
                if average { expected.withUnsafeMutableBufferPointer { OrderedSum.divide($0.baseAddress!, count: count, by: n) } }
            }
            var reversed = [Float](repeating: 0, count: count)
            withPointers(all.reversed()) { ptrs in reversed.withUnsafeMutableBufferPointer { OrderedSum.sum(parts: ptrs, count: count, into: $0.baseAddress!, dividingBy: average ? n : nil) } }
            orderSensitive = bitsEqual(expected, reversed, count)
            let mine = all[ctx.rank]
            block.base.update(from: mine, count: count)
            let t = blocks.reduce(range, average: average, gather: gather)
            // Without the gather, only this rank's slice holds the result (a sharded step).
            let valid = gather ? range : blocks.mySlice(of: range)
            var wrong = 0, outside = 0
            for i in 0..<count {
                if valid.contains(i) { if block.base[i].bitPattern != expected[i].bitPattern { wrong += 1 } }
                else if !range.contains(i) && block.base[i].bitPattern != mine[i].bitPattern { outside += 1 }
            }
            h.check(wrong == 0, "step \(step): \(wrong) elements differ from the ordered \(average ? "average" : "sum")")
            h.check(outside == 0, "step \(step): \(outside) elements outside \(range) changed")
            h.say("step \(step): \(t)")
        }
        // The shared state: each rank writes its shard of both blocks; after publish every rank
        // reads every element as its writer left it, and the node's shards tile the block.
        let shard = state.shard(of: range, grain: 16), slice = blocks.mySlice(of: range)
        let first = state.nodeRank == 0, last = state.nodeRank == state.nodeSize - 1
        h.check(shard == (first ? 0 : slice.lowerBound)..<(last ? count : slice.upperBound),
                "shard \(shard) is not the gradient slice \(slice) (extended to the block's ends)")
        let bounds = ctx.allgather([Int64(shard.lowerBound), Int64(shard.upperBound)]).map(Int.init)
        let node = (ctx.rank / state.nodeSize * state.nodeSize)..<(ctx.rank / state.nodeSize * state.nodeSize + state.nodeSize)
        let tiles = node.map { bounds[2 * $0]..<bounds[2 * $0 + 1] }
        let contiguous = zip(tiles, tiles.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }
        h.check(tiles.first?.lowerBound == 0 && tiles.last?.upperBound == count && contiguous, "the node's shards \(tiles) do not tile 0..<\(count)")
        for b in 0..<2 { let p = state.storage(b).base; for i in shard { p[i] = Float(i) * 0.5 + 1 + Float(b) } }
        state.publish()
        var missing = 0
        for b in 0..<2 { let p = state.storage(b).base; for i in 0..<count where p[i] != Float(i) * 0.5 + 1 + Float(b) { missing += 1 } }
        h.check(missing == 0, "after publish, \(missing) elements of the shared state are not what their owners wrote")
        var mine = [Double](repeating: 0, count: state.nodeSize)
        mine[state.nodeRank] = Double(state.nodeRank + 1)
        h.check(state.sumOverNode(mine) == (1...state.nodeSize).map(Double.init), "sumOverNode of one value per rank: \(state.sumOverNode(mine))")
        if n > 2 && blocks.nodes == 1 { h.check(orderSensitive > 0, "data is not order-sensitive; the check would prove nothing") }
        summary = "\(n) ranks (\(blocks.nodes) node(s) of \(blocks.nodeSize)), \(steps) steps of \(count) floats bit-identical to the ordered sum and average (also scattered), shared state written in shards; reversed rank order would differ in \(orderSensitive)"
    }
}
