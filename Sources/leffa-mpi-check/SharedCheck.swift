// The shared-memory reduction: bit for bit the ordered sum, only inside the range, every step.
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
        h.check(SharedBlocks.alive == 0, "\(SharedBlocks.alive) shared window(s) still allocated after their users were released")
        h.done("\(summary)")
    }

    mutating func check(_ h: Harness, _ ctx: MPIContext) throws {
        let n = ctx.size
        let blocks = try SharedBlocks(context: ctx, count: count, blocks: 2)
        let block = blocks.storage[0], second = blocks.storage[1]
        h.check(SharedBlocks.alive == 1, "\(SharedBlocks.alive) windows alive, expected 1")
        h.check(blocks.storage.allSatisfy { b in b.count == count && (0..<count).allSatisfy { b.base[$0] == 0 } }, "the blocks do not start zeroed")
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
        // A sharded update: each rank writes its slice of block 1; the gather gives everyone all.
        let s = blocks.mySlice(of: range)
        for i in s { second.base[i] = Float(i) * 0.5 + 1 }
        blocks.gather(block: 1, range)
        var missing = 0
        for i in 0..<count where second.base[i] != (range.contains(i) ? Float(i) * 0.5 + 1 : 0) { missing += 1 }
        h.check(missing == 0, "after the gather of block 1, \(missing) elements are not what their owners wrote")
        if n > 2 && blocks.nodes == 1 { h.check(orderSensitive > 0, "data is not order-sensitive; the check would prove nothing") }
        summary = "\(n) ranks (\(blocks.nodes) node(s) of \(blocks.nodeSize)), \(steps) steps of \(count) floats bit-identical to the ordered sum and average (also scattered), sharded block gathered; reversed rank order would differ in \(orderSensitive)"
    }
}
