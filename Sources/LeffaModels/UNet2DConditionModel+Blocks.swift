// How the UNet runs one block: as a function of tensors alone, so that activation checkpointing
// can run it a second time in backward. The block's side effects on the shared ReferenceContext
// go through its inputs and outputs instead: the reference features a generative block reads
// are taken from the context once and passed in; the features a reference block records and the
// flow a probed layer keeps come out as extra outputs and are put into the context
// once. A recomputation therefore neither records twice nor reads another block's feature.
import LeffaTensor
import LeffaLayers

/// What a block's run left behind besides its outputs (the same on every run of it).
private final class BlockRun {
    var outputs = 0, recorded = 0
    var probes: [AttentionProbe] = []
}

extension UNet2DConditionModel {
    /// Runs `body` (the block's tensors, a context of its own → its outputs), recomputed in
    /// backward when `checkpointing`. `attentions`: how many reference features the block reads.
    func runBlock(
        attentions: Int, _ inputs: [Tensor], context: ReferenceContext, checkpointing: Bool,
        _ body: @escaping ([Tensor], ReferenceContext) -> [Tensor]
    ) -> [Tensor] {
        let role = role, flowProbes = context.flowProbes, n = inputs.count
        let read = role == .generative ? context.take(attentions, for: "generative UNet") : []
        let run = BlockRun()
        let pure: ([Tensor]) -> [Tensor] = { all in
            let own = ReferenceContext(flowProbes: flowProbes)
            own.features = Array(all[n...])
            let outputs = body(Array(all[..<n]), own)
            run.outputs = outputs.count
            run.recorded = role == .reference ? own.features.count : 0
            run.probes = own.probes
            return outputs + (role == .reference ? own.features : []) + own.probes.map(\.flow)
        }
        let all = checkpointing ? checkpoint(inputs + read, pure) : pure(inputs + read)
        var rest = all[run.outputs...]
        context.features += rest.prefix(run.recorded)
        rest = rest.dropFirst(run.recorded)
        for (p, flow) in zip(run.probes, rest) {
            context.probes.append(
                AttentionProbe(layer: p.layer, flow: flow, heads: p.heads, height: p.height, width: p.width, tau: p.tau)
            )
        }
        return Array(all[..<run.outputs])
    }
}
