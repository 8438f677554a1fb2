#!/usr/bin/env bash
# Engine benchmark: leffa-bench engine, then the same shapes in PyTorch when it is installed.
# Usage: Scripts/bench-engine.sh [leffa-bench engine options, e.g. --threads 2 --quick]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product leffa-bench
.build/release/leffa-bench engine --json bench-results/engine.json "$@"
python3 Scripts/bench_engine_torch.py --swift-json bench-results/engine.json --json bench-results/engine-torch.json
