#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The library as its users get it: configure and build the tree (Release),
# cmake --install it into a fresh mktemp prefix, then, outside the tree:
#   - build tests/install/consumer.c with pkg-config (shared, and --static)
#     and with find_package(canceltoken 0.2 COMPONENTS net uv) (shared and
#     static targets), run each and compare with consumer.expected: the
#     core, the token server and client, and the libuv adapter;
#   - run the installed cancel-token --version, and a serve/status/trigger
#     round, from the prefix with no LD_LIBRARY_PATH (its RUNPATH);
#   - check the installed files (SONAMEs, static libraries, .pc files,
#     CMake package, man pages, docs, bash completion) and that man -l
#     renders each page;
#   - move the whole prefix elsewhere and build the pkg-config consumer
#     again (relocatable .pc files).
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
src=$PWD
version=$(head -n 1 VERSION)
jobs=$(nproc)
[ "$jobs" -gt 2 ] && jobs=2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ct-install.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
check() { # DESCRIPTION COMMAND...: ok if the command succeeds
  local what=$1; shift
  if "$@" >"$tmp/check.out" 2>&1; then ok "$what"; else
    bad "$what"; sed 's/^/  /' "$tmp/check.out" | tail -n 20; fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

build=$tmp/build
prefix=$tmp/prefix
echo "=== configure, build and install into $prefix"
if ! cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCT_BUILD_TESTS=OFF \
       -DCT_WITH_PYTHON=OFF -DCMAKE_INSTALL_PREFIX=/nonexistent >"$tmp/build.log" 2>&1 ||
   ! cmake --build "$build" -j"$jobs" >>"$tmp/build.log" 2>&1 ||
   ! cmake --install "$build" --prefix "$prefix" >>"$tmp/build.log" 2>&1; then
  tail -n 40 "$tmp/build.log"; bad "build and install"; finish
fi
ok "build and install"
libdir=$prefix/$(cd "$prefix" && ls -d lib lib64 lib/*-linux-gnu 2>/dev/null | while read -r d; do
  [ -e "$d/libcanceltoken.so" ] && echo "$d" && break; done)

# --- the installed files
for lib in canceltoken canceltoken_uv canceltoken_net; do
  check "lib$lib.a installed" test -f "$libdir/lib$lib.a"
  check "lib$lib.so SONAME lib$lib.so.0.2" \
    sh -c "readelf -d '$libdir/lib$lib.so' | grep -q 'SONAME.*\\[lib$lib.so.0.2\\]'"
done
for pc in canceltoken canceltoken-uv canceltoken-net; do
  check "$pc.pc installed" test -f "$libdir/pkgconfig/$pc.pc"
done
# The ZooKeeper backend, when this machine could build it (CT_WITH_ZK=AUTO).
if [ -e "$build/src/zk/Makefile" ] || [ -e "$libdir/libcanceltoken_zk.so" ]; then
  check "libcanceltoken_zk.a installed" test -f "$libdir/libcanceltoken_zk.a"
  check "libcanceltoken_zk.so SONAME libcanceltoken_zk.so.0.2" \
    sh -c "readelf -d '$libdir/libcanceltoken_zk.so' | grep -q 'SONAME.*\\[libcanceltoken_zk.so.0.2\\]'"
  check "canceltoken-zk.pc installed" test -f "$libdir/pkgconfig/canceltoken-zk.pc"
  check "CMake component zk installed" test -f "$libdir/cmake/canceltoken/canceltoken-zk-targets.cmake"
  check "include/canceltoken_zk.h installed" test -f "$prefix/include/canceltoken_zk.h"
fi
for f in include/canceltoken.h include/canceltoken_os.h include/canceltoken_uv.h \
         include/canceltoken_net.h share/bash-completion/completions/cancel-token \
         share/doc/canceltoken/README.md share/doc/canceltoken/LICENSE \
         share/doc/canceltoken/CHANGELOG.md share/doc/canceltoken/PROTOCOL.md; do
  check "$f installed" test -f "$prefix/$f"
done
check "no path of the build tree in the .pc or CMake files" \
  sh -c "! grep -rl -e '$build' -e '/nonexistent' '$libdir/pkgconfig' '$libdir/cmake'"

# --- man pages: installed and rendered
for page in man1/cancel-token.1 man3/libcanceltoken.3; do
  f=$prefix/share/man/$page
  if [ -f "$f" ] && MANWIDTH=80 man -l "$f" >"$tmp/man.out" 2>"$tmp/man.err" &&
     [ ! -s "$tmp/man.err" ] && grep -q '^NAME' "$tmp/man.out" &&
     grep -q '^SYNOPSIS' "$tmp/man.out"; then
    ok "man -l $page renders ($(wc -l <"$tmp/man.out") lines)"
  else
    bad "man -l $page"; cat "$tmp/man.err" 2>/dev/null
  fi
done

# --- the installed command, without LD_LIBRARY_PATH
cli=$prefix/bin/cancel-token
out=$(env -u LD_LIBRARY_PATH "$cli" --version 2>&1)
if [ "$out" = "cancel-token $version (libcanceltoken $version)" ]; then
  ok "installed cancel-token --version: $out"
else
  bad "installed cancel-token --version: $out"
fi
check "cancel-token RUNPATH is relative (\$ORIGIN)" \
  sh -c "readelf -d '$cli' | grep -q 'RUNPATH.*\\\$ORIGIN'"
sock=$tmp/s.sock
env -u LD_LIBRARY_PATH "$cli" serve "$sock" a >"$tmp/serve.out" 2>&1 &
pids+=($!)
until grep -q '^listening' "$tmp/serve.out" 2>/dev/null; do
  kill -0 "${pids[-1]}" 2>/dev/null || break
  sleep 0.02
done
out=$(env -u LD_LIBRARY_PATH "$cli" trigger "$sock" a 2>&1; \
      env -u LD_LIBRARY_PATH "$cli" status "$sock" 2>&1)
if [ "$out" = "$(printf 'a: triggered\na\ttriggered\ttrigger\ta')" ]; then
  ok "installed cancel-token serve/trigger/status"
else
  bad "installed cancel-token serve/trigger/status: $out"
fi
kill "${pids[-1]}" 2>/dev/null

# --- the consumers, outside the tree
expected=$tmp/expected
sed "s/VERSION/$version/g" "$src/tests/install/consumer.expected" >"$expected"
run_consumer() { # NAME PROGRAM
  local name=$1 prog=$2 s
  s=$(mktemp -u "$tmp/c.XXXXXX.sock")
  if env -u LD_LIBRARY_PATH "$prog" "$s" >"$tmp/$name.out" 2>&1 &&
     cmp -s "$tmp/$name.out" "$expected"; then
    ok "$name: output as expected"
  else
    bad "$name"; diff "$expected" "$tmp/$name.out" | sed 's/^/  /'
  fi
}
cp "$src/tests/install/consumer.c" "$tmp/consumer.c"

export PKG_CONFIG_PATH=$libdir/pkgconfig
pc_build() { # OUTPUT [--static]
  local out=$1 flags; shift
  flags=$(pkg-config "$@" --cflags --libs canceltoken-net canceltoken-uv) || return 1
  # --static: link our archives by name (-l:libX.a; the linker would take
  # the .so otherwise), the rest as pkg-config says, which checks that
  # the .pc files' private parts are complete.
  [ "${1:-}" = "--static" ] &&
    flags=$(sed -E 's/-l(canceltoken[_a-z]*)/-l:lib\1.a/g' <<<"$flags")
  # shellcheck disable=SC2086
  cc -Wall -Wextra -Werror -o "$out" "$tmp/consumer.c" $flags \
    -Wl,-rpath,"$(pkg-config --variable=libdir canceltoken)"
}
if pc_build "$tmp/consumer_pc" 2>"$tmp/pc.err"; then
  ok "pkg-config build"; run_consumer consumer_pc "$tmp/consumer_pc"
else bad "pkg-config build"; cat "$tmp/pc.err"; fi
if pc_build "$tmp/consumer_pc_static" --static 2>"$tmp/pc.err" &&
   ! readelf -d "$tmp/consumer_pc_static" | grep -q 'NEEDED.*libcanceltoken'; then
  ok "pkg-config --static build (no libcanceltoken*.so needed)"
  run_consumer consumer_pc_static "$tmp/consumer_pc_static"
else bad "pkg-config --static build"; cat "$tmp/pc.err"; fi

cp "$src/tests/install/CMakeLists.txt" "$tmp/CMakeLists.txt"
if cmake -S "$tmp" -B "$tmp/cbuild" -DCMAKE_PREFIX_PATH="$prefix" \
     -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$tmp/cmake.log" 2>&1 &&
   cmake --build "$tmp/cbuild" -j"$jobs" >>"$tmp/cmake.log" 2>&1; then
  ok "find_package(canceltoken 0.2 COMPONENTS net uv) build"
  run_consumer consumer_cmake "$tmp/cbuild/consumer_cmake"
  run_consumer consumer_cmake_static "$tmp/cbuild/consumer_cmake_static"
else
  bad "find_package build"; tail -n 30 "$tmp/cmake.log"
fi

# A component this installation lacks is a clean configure error.
mkdir -p "$tmp/nocomp"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(x C)\nfind_package(canceltoken 0.2 REQUIRED COMPONENTS nosuch)\n' \
  >"$tmp/nocomp/CMakeLists.txt"
if ! cmake -S "$tmp/nocomp" -B "$tmp/nocomp/b" -DCMAKE_PREFIX_PATH="$prefix" \
       >"$tmp/nocomp.log" 2>&1 && grep -q "nosuch" "$tmp/nocomp.log"; then
  ok "find_package(... COMPONENTS nosuch) fails and names it"
else
  bad "find_package(... COMPONENTS nosuch)"; tail -n 20 "$tmp/nocomp.log"
fi

# The version is written once: a VERSION the header disagrees with is a
# configure error that names both.
mkdir -p "$tmp/ver/include"
cp "$src/CMakeLists.txt" "$tmp/ver/"
cp "$src/include/canceltoken.h" "$tmp/ver/include/"
echo 9.8.7 >"$tmp/ver/VERSION"
if ! cmake -S "$tmp/ver" -B "$tmp/ver/b" >"$tmp/ver.log" 2>&1 &&
   grep -q "CT_VERSION_MAJOR" "$tmp/ver.log" && grep -q "9.8.7" "$tmp/ver.log"; then
  ok "VERSION and canceltoken.h disagreeing is a configure error"
else
  bad "VERSION/header mismatch not caught"; tail -n 20 "$tmp/ver.log"
fi

# --- relocated: move the prefix; pkg-config and the command still work.
moved=$tmp/moved
mv "$prefix" "$moved"
libdir=${libdir/#$prefix/$moved}
export PKG_CONFIG_PATH=$libdir/pkgconfig
if pc_build "$tmp/consumer_moved" 2>"$tmp/pc.err"; then
  ok "pkg-config build after moving the prefix"
  run_consumer consumer_moved "$tmp/consumer_moved"
else bad "pkg-config build after moving the prefix"; cat "$tmp/pc.err"; fi
out=$(env -u LD_LIBRARY_PATH "$moved/bin/cancel-token" --version 2>&1)
if [ "$out" = "cancel-token $version (libcanceltoken $version)" ]; then
  ok "moved cancel-token --version"
else
  bad "moved cancel-token --version: $out"
fi

finish
