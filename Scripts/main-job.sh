#!/usr/bin/env bash
# The main job: all three Leffa stages (lowres, highres, leffa) of Configs/tiny-synthetic.yaml on
# synthetic try-on data with 2 MPI ranks, then an export, a golden-check pass of the exported
# weights on the run's own data, a try-on sample, and the held-out evaluation of the final stage
# (it fails unless the model beats the targets: PSNR >= 20 dB, garment SSIM >= baseline + 0.10).
# Everything lands in $RUN (default runs/tiny-synthetic); rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/tiny-synthetic}
NP=${NP:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release
B=.build/release
# init also makes the synthetic set the config's data.synthesize describes (512 + 32 pairs, 32x24).
[ -f "$RUN/state.json" ] || $B/leffa-coord init --config Configs/tiny-synthetic.yaml --run "$RUN"
$B/leffa-coord check-data --kind synthetic --root "$RUN/data"
$B/leffa-coord check-data --kind synthetic --root "$RUN/data" --split test
$B/leffa-coord run --run "$RUN" --np "$NP"
mkdir -p "$RUN/export"
$B/leffa-coord export --run "$RUN" --ema --format leffa --out "$RUN/export/leffa.safetensors"
# Timestep 250: below the Leffa loss's threshold (500), so the check includes the Leffa term.
$B/leffa-coord debug inputs --run "$RUN" --out "$RUN/export/inputs.safetensors" --timestep 250
$B/leffa-coord debug forward --weights "$RUN/export/leffa.safetensors" --config "$RUN/config.yaml" \
  --inputs "$RUN/export/inputs.safetensors" --out "$RUN/export/golden-check.safetensors"
# A held-out person with another held-out garment (the unpaired setting).
D="$RUN/data/test"
$B/leffa-coord sample --run "$RUN" --ema --person "$D/image/000000_00.png" --garment "$D/cloth/000001_00.png" \
  --mask "$D/agnostic-mask/000000_00_mask.png" --densepose "$D/image-densepose/000000_00.png" \
  --out "$RUN/samples" --steps 20 --guidance 1 --ref-acceleration
# The final stage's EMA weights on every held-out test pair, shared over the ranks.
mpirun -np "$NP" --bind-to none $B/leffa-coord eval --run "$RUN" --ema --out "$RUN/eval" --steps 20 --guidance 1 \
  --ref-acceleration --min-psnr 20 --min-garment-ssim-gain 0.10
echo
echo "done: checkpoints in $RUN/stages/*/checkpoints, flow snapshots (HDF5 + PNG) in $RUN/stages/*/snapshots,"
echo "      validation samples (masked person | garment | sample | target) in $RUN/stages/*/samples,"
echo "      a sample in $RUN/samples, export in $RUN/export/leffa.safetensors,"
echo "      held-out evaluation in $RUN/eval (eval.json, contact-sheet.png, generated/ and target/ for FID tools)"
