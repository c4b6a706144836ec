#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the Go peer: build.sh GO OUTDIR -> OUTDIR/go_bench.  Module mode
# with no requirements, no network (GOPROXY=off) and no toolchain download
# (GOTOOLCHAIN=local); the build cache lives in OUTDIR.  On failure it
# removes OUTDIR/go_bench, says so and exits 0, so that run.py reports the
# Go peer as unavailable instead of the whole build failing.
go=$1
out=$2
cd "$(dirname "$0")" || exit 0
if env GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GO111MODULE=on \
     GOCACHE="$out/go-cache" GOPATH="$out/go-path" GOWORK=off \
     "$go" build -o "$out/go_bench" . ; then
  exit 0
fi
rm -f "$out/go_bench"
echo "bench: the Go peer did not build; run.py will report it unavailable" >&2
exit 0
