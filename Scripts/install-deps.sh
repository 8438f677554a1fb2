#!/usr/bin/env bash
# Installs the native libraries the package links against (Debian/Ubuntu). Swift 6 must be on PATH.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq libopenblas-dev libopenmpi-dev openmpi-bin libpng-dev libhdf5-dev \
    hdf5-tools libjpeg62-turbo-dev pkg-config util-linux procps binutils >/dev/null
# util-linux: flock, procps: pgrep, binutils: objdump (tests)
echo "native libraries installed: OpenBLAS, OpenMPI, HDF5, libpng, libjpeg-turbo"
