#!/usr/bin/env bash
# Data-parallel benchmark: images/s of the `small` model's training step with 1 and 2 ranks of one
# kernel thread each, the fraction of step time waiting on the all-reduce, and a bucket-size sweep.
# Writes bench-results/ddp-*.json and a summary table with the 2-rank speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LEFFA_THREADS=1
REPEATS=${REPEATS:-5}
swift build -c release --product leffa-bench
B=.build/release/leffa-bench
mkdir -p bench-results
mpirun --oversubscribe -np 1 $B ddp --repeats "$REPEATS" --json bench-results/ddp-1rank.json
for mb in 1 5 25 100; do
  mpirun --oversubscribe -np 2 $B ddp --repeats "$REPEATS" --bucket-mb $mb --json bench-results/ddp-2ranks-${mb}mb.json
done
mpirun --oversubscribe -np 2 $B ddp --repeats "$REPEATS" --no-overlap --json bench-results/ddp-2ranks-25mb-nooverlap.json
python3 - <<'PY'
import glob, json
one = json.load(open("bench-results/ddp-1rank.json"))
rows = [json.load(open(f)) for f in sorted(glob.glob("bench-results/ddp-2ranks-*.json"))]
print(f"\n1 rank: {one['images_per_second']:.3f} img/s")
print(f"{'ranks':>5} {'bucket MB':>9} {'overlap':>7} {'img/s':>8} {'speed-up':>8} {'waiting':>8}")
for r in rows:
    print(f"{r['ranks']:>5} {r['bucket_mb']:>9} {str(r['overlap']):>7} {r['images_per_second']:8.3f} {r['images_per_second']/one['images_per_second']:8.2f}x {100*r['wait_fraction']:7.1f}%")
json.dump({"one_rank": one, "two_ranks": rows}, open("bench-results/ddp.json", "w"), indent=1)
print("\nwrote bench-results/ddp.json")
PY
