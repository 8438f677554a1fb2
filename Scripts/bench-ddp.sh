#!/usr/bin/env bash
# Data-parallel benchmark: images/s of the `small` model's training step with 1 and 2 ranks of one
# kernel thread each, the fraction of step time spent reducing gradients (not hidden behind
# backward), for both ways of averaging: shared memory (the default on one node) and overlapped MPI
# buckets (what runs across nodes) over a bucket-size sweep; both with the node's one copy of the
# weights and moments and the optimizer step sharded over the ranks, and shared memory also
# without (every rank holding and updating the whole state).
#
# The headline is the way data parallelism is used (PyTorch DDP, Horovod): every rank trains the
# same per-rank batch (2 here), so 2 ranks do twice the samples per step; ideal is 2.00×. The
# strong-scaling rows split a global batch of 2 instead (1 sample per rank); they are bounded by
# how much less efficient a batch of 1 is than a batch of 2 on one rank, measured here too.
# Writes bench-results/ddp-*.json and bench-results/ddp.json with the table.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LEFFA_THREADS=1
REPEATS=${REPEATS:-5}
PER_RANK=${PER_RANK:-2}
swift build -c release --product leffa-bench
B=".build/release/leffa-bench ddp --repeats $REPEATS"
R=bench-results
mkdir -p $R
rm -f $R/ddp-2ranks-*.json
mpirun --oversubscribe -np 1 $B --per-rank-batch "$PER_RANK" --json $R/ddp-1rank.json
mpirun --oversubscribe -np 2 $B --per-rank-batch "$PER_RANK" --json $R/ddp-2ranks-default.json
mpirun --oversubscribe -np 2 $B --per-rank-batch "$PER_RANK" --reduction shared --unsharded --json $R/ddp-2ranks-shared-unsharded.json
for mb in 1 5 25 100; do
  mpirun --oversubscribe -np 2 $B --per-rank-batch "$PER_RANK" --reduction buckets --bucket-mb $mb --json $R/ddp-2ranks-buckets-${mb}mb.json
done
mpirun --oversubscribe -np 2 $B --per-rank-batch "$PER_RANK" --reduction buckets --no-overlap --json $R/ddp-2ranks-buckets-25mb-nooverlap.json
# Strong scaling: the global batch of the 1-rank run split over 2 ranks, and one rank at batch 1.
mpirun --oversubscribe -np 2 $B --batch "$PER_RANK" --json $R/ddp-strong-2ranks.json
mpirun --oversubscribe -np 1 $B --batch $((PER_RANK / 2)) --json $R/ddp-strong-1rank-half.json
python3 - "$R" <<'PY'
import glob, json, sys
R = sys.argv[1]
one = json.load(open(f"{R}/ddp-1rank.json"))
default = json.load(open(f"{R}/ddp-2ranks-default.json"))
weak = [default, json.load(open(f"{R}/ddp-2ranks-shared-unsharded.json"))] + \
    sorted([json.load(open(f)) for f in glob.glob(f"{R}/ddp-2ranks-buckets-*.json")], key=lambda r: (not r["overlap"], r["bucket_mb"]))
strong = json.load(open(f"{R}/ddp-strong-2ranks.json"))
half = json.load(open(f"{R}/ddp-strong-1rank-half.json"))
# Speed-ups compare best steps (each rank's fastest, slowest rank): other load on a shared machine
# only ever slows a step down. Medians are shown beside them.
base, base_med = one["best_images_per_second"], one["images_per_second"]
print(f"\n1 rank × 1 thread, batch {one['global_batch']}: {base:.3f} img/s best, {base_med:.3f} median")
def how(r):
    step = ", sharded step" if r["sharded"] else ""
    if r["reduction"] == "shared": return "shared" + step
    return f"buckets {r['bucket_mb']} MB" + ("" if r["overlap"] else ", not overlapped") + step
print(f"{'ranks':>5} {'batch/rank':>10}  {'gradient averaging':<28} {'img/s':>8} {'speed-up':>8} {'(median)':>8} {'waiting':>8}")
for r in weak + [strong]:
    print(f"{r['ranks']:>5} {r['per_rank_batch']:>10}  {how(r):<28} {r['best_images_per_second']:8.3f} "
          f"{r['best_images_per_second']/base:7.2f}x {r['images_per_second']/base_med:7.2f}x {100*r['wait_fraction']:7.1f}%")
eff = half["best_images_per_second"] / base
print(f"\nspeed-up, 2 ranks × 1 thread vs 1 rank × 1 thread, same per-rank batch, default ({how(default)}): "
      f"{default['best_images_per_second']/base:.2f}x (median {default['images_per_second']/base_med:.2f}x; target 1.9x)")
print(f"strong scaling (global batch {one['global_batch']} split): {strong['best_images_per_second']/base:.2f}x; "
      f"one rank at batch {half['global_batch']} runs {100*eff:.0f} % as many img/s as at batch {one['global_batch']}, "
      f"so the split's ceiling is {2*eff:.2f}x")
json.dump({"one_rank": one, "two_ranks": weak, "strong_two_ranks": strong, "one_rank_half_batch": half,
           "speedup_same_per_rank_batch": default["best_images_per_second"] / base,
           "speedup_same_per_rank_batch_median": default["images_per_second"] / base_med,
           "speedup_split_global_batch": strong["best_images_per_second"] / base,
           "half_batch_efficiency": eff}, open(f"{R}/ddp.json", "w"), indent=1)
print(f"\nwrote {R}/ddp.json")
PY
