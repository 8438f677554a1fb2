#!/usr/bin/env bash
# The main job: all three Leffa stages (lowres, highres, leffa) on synthetic try-on data with
# 2 MPI ranks, then an export, a golden-check pass of the exported weights on the run's own data,
# and try-on samples. Everything lands in $RUN (default runs/tiny-synthetic); rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/tiny-synthetic}
NP=${NP:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release
B=.build/release
[ -f "$RUN/state.json" ] || $B/leffa-coord init --config Configs/tiny-synthetic.yaml --run "$RUN"
[ -f "$RUN/data/train_pairs.txt" ] || $B/leffa-coord synth --out "$RUN/data" --count 16 --size 64x48
$B/leffa-coord check-data --kind synthetic --root "$RUN/data"
$B/leffa-coord run --run "$RUN" --np "$NP"
mkdir -p "$RUN/export"
$B/leffa-coord export --run "$RUN" --format leffa --out "$RUN/export/leffa.safetensors"
# Timestep 250: below the Leffa loss's threshold (500), so the check includes the Leffa term.
$B/leffa-coord debug inputs --run "$RUN" --out "$RUN/export/inputs.safetensors" --timestep 250
$B/leffa-coord debug forward --weights "$RUN/export/leffa.safetensors" --config "$RUN/config.yaml" \
  --inputs "$RUN/export/inputs.safetensors" --out "$RUN/export/golden-check.safetensors"
D="$RUN/data/train"
$B/leffa-coord sample --run "$RUN" --person "$D/image/000000_00.png" --garment "$D/cloth/000001_00.png" \
  --mask "$D/agnostic-mask/000000_00_mask.png" --densepose "$D/image-densepose/000000_00.png" \
  --out "$RUN/samples" --steps 20
echo
echo "done: checkpoints in $RUN/stages/*/checkpoints, flow snapshots (HDF5 + PNG) in $RUN/stages/*/snapshots,"
echo "      validation samples (masked person | garment | sample | target) in $RUN/stages/*/samples,"
echo "      samples in $RUN/samples, export in $RUN/export/leffa.safetensors"
