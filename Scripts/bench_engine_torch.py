#!/usr/bin/env python3
"""The engine benchmark's shapes in PyTorch, for the ratio against leffa-bench measured in one run.

Reads the JSON that `leffa-bench engine` wrote (threads and shapes), times the same cases with
torch (same thread count), prints both and the ratio, and writes its own JSON beside it.
Not a test: the project's tests never need PyTorch.
"""
import argparse, json, re, statistics, sys, time

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swift-json", default="bench-results/engine.json")
    ap.add_argument("--json", default="bench-results/engine-torch.json")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("PyTorch is not installed: skipping the PyTorch comparison (pip install torch)")
        return 0
    swift = json.load(open(args.swift_json))
    torch.set_num_threads(swift["threads"])
    torch.manual_seed(0)

    def timeit(fn, repeats):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    out = []
    fwd_times = {}
    measured = {}  # rows repeated with other attention kernels, "name (kernels)", reuse torch's time
    for row in swift["rows"]:
        name, shape = row["name"], row["shape"]
        reps = args.repeats
        marked = re.match(r"(.*) \((.*)\)$", name)  # "attention fwd (8-wide)": as "attention forward"
        base = ({"attention fwd": "attention forward", "attention bwd": "attention backward"}
                .get(marked.group(1), marked.group(1)) if marked else name)
        if (base, shape) in measured:
            t = measured[(base, shape)]
        elif name.startswith("sgemm"):
            s = int(shape.split("x")[0])
            a, b = torch.randn(s, s), torch.randn(s, s)
            t = timeit(lambda: torch.mm(a, b), reps)
        elif name.startswith("conv2d"):
            n, cin, cout, h, w = map(int, re.match(r"B(\d+) (\d+)->(\d+) (\d+)x(\d+)", shape).groups())
            x = torch.randn(n, cin, h, w, requires_grad=True)
            wt = (0.02 * torch.randn(cout, cin, 3, 3)).requires_grad_()
            bias = torch.randn(cout, requires_grad=True)
            g = torch.randn(n, cout, h, w)
            if "forward" in name:
                with torch.no_grad():
                    t = timeit(lambda: F.conv2d(x, wt, bias, padding=1), reps)
                fwd_times[shape] = t
            else:
                def fb():
                    F.conv2d(x, wt, bias, padding=1).backward(g)
                t = max(timeit(fb, reps) - fwd_times[shape], 1e-9)
        elif name.startswith("attention"):
            nq, m, heads, d = map(int, re.match(r"n(\d+) m(\d+) (\d+)x(\d+)", shape).groups())
            q = torch.randn(1, heads, nq, d, requires_grad=True)
            k = torch.randn(1, heads, m, d, requires_grad=True)
            v = torch.randn(1, heads, m, d, requires_grad=True)
            g = torch.randn(1, heads, nq, d)
            reps = max(1, reps // 2) if nq > 4096 else reps
            if "forward" in name:
                with torch.no_grad():
                    t = timeit(lambda: F.scaled_dot_product_attention(q, k, v), reps)
                fwd_times[shape] = t
            else:
                def fb():
                    F.scaled_dot_product_attention(q, k, v).backward(g)
                # "attention backward" rows are backward alone; "attention fwd+bwd" is both.
                t = timeit(fb, reps)
                if "backward" in name:
                    t = max(t - fwd_times[shape], 1e-9)
        else:
            continue
        measured[(base, shape)] = t
        out.append({"name": name, "shape": shape, "torch_seconds": t, "swift_seconds": row["seconds"],
                    "torch_gflops": row["gflop"] / t, "swift_over_torch_time": row["seconds"] / t,
                    "swift_fraction_of_peak": row.get("fraction_of_peak")})
    # Torch's own fraction of its sgemm (torch.mm) peak, for the same kind of figure as ours.
    torch_peak = next((r["torch_gflops"] for r in out if r["name"].startswith("sgemm")), None)
    for r in out:
        r["torch_fraction_of_peak"] = r["torch_gflops"] / torch_peak if torch_peak else None

    print(f"\nPyTorch {torch.__version__}, {swift['threads']} thread(s): time ratio swift/torch (< 1 means we are faster)")
    print(f"{'name':26}{'shape':34}{'torch ms':>10}{'swift ms':>10}{'ratio':>8}{'torch/peak':>12}{'swift/peak':>12}")
    pct = lambda x: f"{100 * x:11.1f}%" if x is not None else f"{'-':>12}"
    for r in out:
        print(f"{r['name']:26}{r['shape']:34}{1e3*r['torch_seconds']:10.2f}{1e3*r['swift_seconds']:10.2f}{r['swift_over_torch_time']:8.2f}"
              f"{pct(r['torch_fraction_of_peak'])}{pct(r['swift_fraction_of_peak'])}")
    json.dump({"torch_version": torch.__version__, "threads": swift["threads"], "rows": out}, open(args.json, "w"), indent=1)
    print(f"\nwrote {args.json}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
