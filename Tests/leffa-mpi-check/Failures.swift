// The failure modes: a rank that dies (the launcher must end the job) and a rank that hangs
// without dying (the watchdog must end it). Both loop forever unless something stops them.
import ArgumentParser
import Foundation
import LeffaDistributed
import LeffaTensor

struct DieCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "die", abstract: "The last rank SIGKILLs itself in a loop of all-reduces; the job must end non-zero.")
    @Option(help: "Iteration at which the last rank kills itself.") var killAt = 20

    func run() throws {
        let h = try Harness("die")
        let ctx = h.ctx
        var buf = [Float](repeating: 1, count: 1 << 18)
        var i = 0
        while true {
            if ctx.rank == ctx.size - 1 && i == killAt {
                fputs("rank \(ctx.rank): killing myself with SIGKILL at iteration \(i)\n", stderr)
                raise(SIGKILL)
            }
            ctx.allreduce(&buf)
            for j in buf.indices { buf[j] = 1 }
            if i % 10 == 0 { h.say("iteration \(i)") }
            i += 1
        }
    }
}

struct HangCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hang", abstract: "The last rank stops calling MPI without dying; the watchdog (LEFFA_MPI_TIMEOUT) must end the job.")
    @Option(help: "Step at which the last rank stops.") var stopAt = 5

    func run() throws {
        let h = try Harness("hang")
        let ctx = h.ctx
        let sizes = [Int](repeating: 10_000, count: 40)
        let grads = Tensor(zeros: [sizes.reduce(0, +)])
        // The hang happens inside the reducer's communication thread: the watchdog must see it there.
        let reducer = try GradientReducer(context: ctx, gradients: grads, parameterSizes: sizes, capBytes: 100_000)
        var step = 0
        while true {
            if ctx.rank == ctx.size - 1 && step == stopAt {
                fputs("rank \(ctx.rank): hanging without MPI calls at step \(step)\n", stderr)
                while true { sleep(1) }
            }
            for p in sizes.indices.reversed() { reducer.markReady(p) }
            reducer.finish()
            h.say("step \(step)")
            step += 1
        }
    }
}
