#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds the library, and runs the quick start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target example_quickstart >/dev/null
./build/examples/quickstart
