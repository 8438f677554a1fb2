#!/usr/bin/env bash
# The test suite: numeric code only means something optimised, so tests build in release.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release -Xswiftc -enable-testing
# Tests run much of the engine in-process: give them the OpenBLAS kernels the executables pick
# (on a CPU that OpenBLAS does not know, they restart with better ones; BLASKernels.swift).
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    OPENBLAS_CORETYPE="$(.build/release/leffa-bench kernels)"
    export OPENBLAS_CORETYPE
fi
swift test -c release -Xswiftc -enable-testing "$@"
