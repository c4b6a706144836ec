#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the tokio-util peer: build.sh CARGO OUTDIR -> OUTDIR/rust_bench.
# Offline, from the crates Debian installs in /usr/share/cargo/registry
# (librust-tokio-util-dev, librust-tokio-dev, librust-libc-dev; see
# .cargo/config.toml).  The crate is copied into OUTDIR/rust-src and built
# there, so that neither Cargo.lock nor target/ lands in the source tree.
# With Debian's cargo (/usr/bin/cargo) it uses Debian's rustc next to it,
# whatever else is first in PATH.  On failure (no cargo, crates missing) it
# removes OUTDIR/rust_bench, says so and exits 0, so that run.py reports
# the peer as unavailable instead of the whole build failing.
cargo=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd) || exit 0
fail() {
  rm -f "$out/rust_bench"
  echo "bench: the tokio peer did not build ($1); run.py will report it unavailable" >&2
  exit 0
}
[ -d /usr/share/cargo/registry ] || fail "no /usr/share/cargo/registry: apt-get install librust-tokio-util-dev librust-tokio-dev cargo"
ls -d /usr/share/cargo/registry/tokio-util-0.7.* >/dev/null 2>&1 ||
  fail "tokio-util 0.7 is not in /usr/share/cargo/registry: apt-get install librust-tokio-util-dev"
src=$out/rust-src
mkdir -p "$src/src" "$src/.cargo" || fail "cannot write $src"
cp "$here/Cargo.toml" "$src/" && cp "$here/src/main.rs" "$src/src/" &&
  cp "$here/.cargo/config.toml" "$src/.cargo/" || fail "cannot copy the crate"
rustc=$(dirname "$cargo")/rustc
[ -x "$rustc" ] || rustc=rustc
export RUSTC="$rustc"
export CARGO_HOME="$out/cargo-home"
cd "$src" || fail "cd $src"
"$cargo" generate-lockfile --offline -q || fail "cargo generate-lockfile"
ver() { awk -v n="$1" '$1 == "name" && $3 == "\"" n "\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock; }
CT_TOKIO_UTIL_VERSION=$(ver tokio-util)
CT_TOKIO_VERSION=$(ver tokio)
CT_RUSTC_VERSION=$("$rustc" --version)
export CT_TOKIO_UTIL_VERSION CT_TOKIO_VERSION CT_RUSTC_VERSION
"$cargo" build --offline --release -q --target-dir "$out/rust-target" ||
  fail "cargo build"
cp "$out/rust-target/release/rust_bench" "$out/rust_bench" || fail "copy"
exit 0
