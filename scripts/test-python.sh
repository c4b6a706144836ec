#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test-python.sh -- the Python package's tests against every CPython 3.9+
# on this machine, and its sdist in fresh virtual environments, offline.
#
#   bash scripts/test-python.sh
#
# 1. Installs what it needs from Debian (scripts/deps.sh python).
# 2. For each interpreter found -- Debian's /usr/bin/python3 and every
#    ~/.pyenv/versions/*/bin/python3 (and $PYENV_ROOT's), older than 3.9
#    ones listed as not supported -- configures a CMake build of the
#    package with -DPython3_EXECUTABLE=that interpreter and -Werror (each
#    interpreter's headers declare a different limited API; a function
#    missing from 3.9's must fail the build, not truncate a pointer) (in a mktemp -d
#    directory), builds the extension, and runs python/tests/run.py with
#    it: pytest where the interpreter has it (Debian's), the suite's own
#    small runner where it has not (pyenv's).
# 3. Builds the sdist with the package's own backend, and for the python3
#    first on PATH and for Debian's, makes a fresh venv, installs the sdist
#    into it with pip and no index (offline), and runs the sdist's tests.
# Ends with one line: "N passed, N failed" (test cases, every run
# together; skipped cases are reported per run, not counted).  Exit
# status 0 only if nothing failed and every step ran.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${JOBS:-2}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ct-test-python-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

bash "$ROOT/scripts/deps.sh" python >"$WORK/deps.log" 2>&1 || {
  echo "test-python: installing Debian packages failed:"; tail -5 "$WORK/deps.log"
  echo "0 passed, 1 failed"; exit 1; }

TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY=()

# Add the counts of one run (its output in $1) to the totals.
count() {
  local line p f s st
  line=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  if [ -z "$line" ]; then
    echo "-- $2: the run did not finish; the end of its output:"
    grep -a -v '^SKIPPED' "$1" | tail -40
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
    SUMMARY+=("$2: did not finish (its output is above)")
    return
  fi
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
  s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
  st=$(sed -nE 's/^exit status ([0-9]+)$/\1/p' "$1" | tail -1)
  if [ "$f" -eq 0 ] && [ "${st:-0}" -ne 0 ]; then
    # Every case passed but the interpreter then failed (a crash at exit).
    echo "-- $2: exit status $st after the summary; the end of its output:"
    tail -20 "$1"
    f=1
  fi
  TOTAL_PASSED=$((TOTAL_PASSED + p))
  TOTAL_FAILED=$((TOTAL_FAILED + f))
  SUMMARY+=("$2: $p passed, $f failed, ${s:-0} skipped${st:+, exit status $st}")
}

fail_step() {
  TOTAL_FAILED=$((TOTAL_FAILED + 1))
  SUMMARY+=("$1: FAILED ($2)")
}

# The interpreters: Debian's, then pyenv's, each once (by real path).
declare -A SEEN=()
INTERPRETERS=()
for py in /usr/bin/python3 $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3 2>/dev/null | sort -V); do
  [ -x "$py" ] || continue
  real=$(readlink -f "$py")
  [ -z "${SEEN[$real]:-}" ] || continue
  SEEN[$real]=1
  if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    INTERPRETERS+=("$py")
  else
    v=$("$py" -c 'import sys; print(sys.version.split()[0])' 2>&1 | tail -1)
    SUMMARY+=("$py ($v): not supported (3.9+ only), not run")
  fi
done
for py in "${INTERPRETERS[@]}"; do
  if [ "$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("Py_GIL_DISABLED") or 0)')" = 1 ]; then
    SUMMARY+=("$py: free-threaded build")
  fi
done
echo "test-python: interpreters: ${INTERPRETERS[*]}"

# 2. A CMake build and the suite for each interpreter.
CLI=""
ZK_TRIGGER=""
for py in "${INTERPRETERS[@]}"; do
  ver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  b=$(mktemp -d "$WORK/build-$ver-XXXX")
  echo "== CPython $ver ($py): CMake build in $b"
  if ! cmake -S "$ROOT" -B "$b" -DCMAKE_BUILD_TYPE=Release \
         -DCT_WITH_PYTHON=ON -DCT_WERROR=ON -DPython3_EXECUTABLE="$py" >"$b/configure.log" 2>&1; then
    tail -20 "$b/configure.log"; fail_step "CPython $ver ($py)" "configure"; continue
  fi
  targets=(--target ct_python_core)
  [ -n "$CLI" ] || targets+=(--target cancel-token)
  if ! cmake --build "$b" -j"$JOBS" "${targets[@]}" >"$b/build.log" 2>&1; then
    tail -30 "$b/build.log"; fail_step "CPython $ver ($py)" "build"; continue
  fi
  [ -n "$CLI" ] || { [ -x "$b/tools/cancel-token" ] && CLI="$b/tools/cancel-token"; }
  # The ZooKeeper test's C process, built with the module when the
  # ZooKeeper backend is (the ensemble comes from scripts/zk-ensemble.sh).
  [ -n "$ZK_TRIGGER" ] || { [ -x "$b/python/ct_py_zk_trigger" ] && ZK_TRIGGER="$b/python/ct_py_zk_trigger"; }
  (cd "$b/python" && PYTHONPATH="$b/python" PYTHONDONTWRITEBYTECODE=1 CT_CLI="$CLI" \
     CT_ZK_TRIGGER="$ZK_TRIGGER" CT_ZK_ENSEMBLE="$ROOT/scripts/zk-ensemble.sh" \
     timeout 900 "$py" -X faulthandler "$ROOT/python/tests/run.py") >"$b/test.log" 2>&1
  echo "exit status $?" >>"$b/test.log"
  grep -a -E '^(FAILED|ERROR)|^runner:|passed, ' "$b/test.log"
  grep -a -q '^FAILED\|^ERROR' "$b/test.log" && grep -a -v '^SKIPPED' "$b/test.log" | tail -60
  count "$b/test.log" "CPython $ver ($py), CMake build"
done

# 3. The sdist, installed offline into fresh venvs and tested there.
sd="$WORK/sdist"
if ! sdist=$(/usr/bin/python3 "$ROOT/python/backend/ct_build.py" sdist "$sd" 2>"$WORK/sdist.log"); then
  cat "$WORK/sdist.log"; fail_step "sdist" "build"
else
  echo "== sdist: $(basename "$sdist")"
  tar xzf "$sdist" -C "$sd"
  src="$sd/$(basename "$sdist" .tar.gz)"
  path_py=$(command -v python3)
  for py in "$path_py" /usr/bin/python3; do
    ver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    v="$WORK/venv-$ver-$RANDOM"
    flags=()
    # Debian's venv sees Debian's pytest and trio; pyenv's has its runner.
    [ "$py" = /usr/bin/python3 ] && flags+=(--system-site-packages)
    if ! "$py" -m venv "${flags[@]}" "$v" >"$WORK/venv.log" 2>&1; then
      cat "$WORK/venv.log"; fail_step "sdist in a venv of $py" "venv"; continue
    fi
    echo "== sdist: pip install into a fresh venv of CPython $ver ($py), offline"
    if ! (cd "$WORK" && PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
          "$v/bin/python" -m pip install "$sdist") >"$v.pip.log" 2>&1; then
      tail -20 "$v.pip.log"; fail_step "sdist in a venv of $py" "pip install"; continue
    fi
    (cd "$src" && PYTHONDONTWRITEBYTECODE=1 CT_CLI="$CLI" CT_ZK_TRIGGER="$ZK_TRIGGER" \
       CT_ZK_ENSEMBLE="$ROOT/scripts/zk-ensemble.sh" timeout 900 \
       "$v/bin/python" -X faulthandler tests/run.py) >"$v.test.log" 2>&1
    echo "exit status $?" >>"$v.test.log"
    grep -a -E '^(FAILED|ERROR)|^runner:|passed, ' "$v.test.log"
    grep -a -q '^FAILED\|^ERROR' "$v.test.log" && grep -a -v '^SKIPPED' "$v.test.log" | tail -60
    count "$v.test.log" "sdist, venv of CPython $ver ($py)"
  done
fi

echo "== test-python summary"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
