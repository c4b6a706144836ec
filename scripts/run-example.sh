#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what building the core library and its examples needs (cmake,
# gcc, make, pkg-config: scripts/deps.sh example), builds the library and
# the quick-start example in build/, and runs it.  Nothing else: no
# adapters, tests, Python or benchmark toolchains.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh example
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCT_BUILD_TESTS=OFF -DCT_BUILD_EXAMPLES=ON \
  -DCT_WITH_UV=OFF -DCT_WITH_NET=OFF -DCT_WITH_ZK=OFF -DCT_WITH_PYTHON=OFF \
  -DCT_INSTALL_DOCS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target example_quickstart >/dev/null
./build/examples/quickstart
