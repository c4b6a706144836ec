#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Tests of the cancel-token command's interface for people and scripts,
# against a real "cancel-token serve" on a Unix socket in a mktemp
# directory: --version (against the VERSION file and the loaded library),
# per-subcommand --help, options refused by the wrong subcommand, escaping
# of names with tabs, newlines, quotes and backslashes in the plain output,
# and status --json / wait --json read back by Python's json module.
#
# usage: test_cli.sh PATH-TO-cancel-token VERSION-FILE
set -u
cli=$1
version=$(head -n 1 "$2")
dir=$(mktemp -d "${TMPDIR:-/tmp}/ct-cli.XXXXXX")
srv=""
cleanup() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
expect_eq() { # what got want
  if [ "$2" = "$3" ]; then ok; else
    bad "$1"; printf '  got:  %q\n  want: %q\n' "$2" "$3"; fi
}

# --version: the header's version and the loaded library's, both VERSION.
expect_eq "--version" "$("$cli" --version)" \
  "cancel-token $version (libcanceltoken $version)"

# SUBCOMMAND --help: that subcommand's usage, and no other's.
for sub in serve trigger wait status run; do
  out=$("$cli" "$sub" --help); rc=$?
  expect_eq "$sub --help exit" "$rc" 0
  case $out in "usage: cancel-token $sub "*) ok ;; *) bad "$sub --help: $out" ;; esac
  for other in serve trigger wait status run; do
    [ "$other" = "$sub" ] && continue
    case $out in *"cancel-token $other "*) bad "$sub --help mentions $other" ;; *) ok ;; esac
  done
  case $out in *"Exit status"*) ok ;; *) bad "$sub --help has no exit status" ;; esac
done
expect_eq "help wait = wait --help" "$("$cli" help wait)" "$("$cli" wait --help)"

# An option of another subcommand is a usage error, not ignored.
"$cli" status /nowhere --timeout 1 2>/dev/null; expect_eq "status --timeout" $? 64
"$cli" trigger /nowhere x --json 2>/dev/null; expect_eq "trigger --json" $? 64
"$cli" --bogus 2>/dev/null; expect_eq "unknown command" $? 64

# A malformed address is refused by the parser before any connection,
# with a reason that names it.
err=$("$cli" status 'a:b:c' 2>&1 >/dev/null); rc=$?
expect_eq "malformed address exit" "$rc" 3
case $err in *"'a:b:c'"*) ok ;; *) bad "malformed address message: $err" ;; esac
case $err in *connect*) bad "malformed address tried to connect: $err" ;; *) ok ;; esac

# A server with awkward names.
odd=$'tab\there\nnew "q" \\ end'
sock=$dir/s.sock
"$cli" serve "$sock" plain "$odd" >"$dir/serve.out" 2>&1 &
srv=$!
until grep -q '^listening on ' "$dir/serve.out"; do
  kill -0 "$srv" 2>/dev/null || { cat "$dir/serve.out"; bad "serve died"; exit 1; }
  sleep 0.02
done

expect_eq "status, escaped names" "$("$cli" status "$sock")" \
  "$(printf 'plain\tnot-triggered\ntab\\there\\nnew "q" \\\\ end\tnot-triggered')"
expect_eq "trigger, escaped name" "$("$cli" trigger "$sock" "$odd")" \
  'tab\there\nnew "q" \\ end: triggered'
expect_eq "wait, escaped name" "$("$cli" wait "$sock" "$odd")" \
  'tab\there\nnew "q" \\ end: triggered by tab\there\nnew "q" \\ end (trigger)'

# JSON, read back: the names come back byte for byte.
"$cli" status "$sock" --json >"$dir/status.json"; expect_eq "status --json exit" $? 0
got=$(ODD="$odd" python3 - "$dir/status.json" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
t = doc["tokens"]
odd = os.environ["ODD"]
assert [x["name"] for x in t] == ["plain", odd], t
assert t[0] == {"name": "plain", "triggered": False, "reason": "none",
                "detail": 0, "cause": ""}, t[0]
assert t[1] == {"name": odd, "triggered": True, "reason": "trigger",
                "detail": 0, "cause": odd}, t[1]
print("ok")
PY
)
expect_eq "status --json content" "$got" ok

"$cli" wait "$sock" "$odd" --json >"$dir/wait.json"; expect_eq "wait --json exit" $? 0
"$cli" wait "$sock" plain --timeout 0.05 --json >"$dir/wait2.json"
expect_eq "wait --json timeout exit" $? 1
got=$(ODD="$odd" python3 - "$dir/wait.json" "$dir/wait2.json" <<'PY'
import json, os, sys
odd = os.environ["ODD"]
w = json.load(open(sys.argv[1]))
assert w == {"name": odd, "outcome": "triggered", "reason": "trigger",
             "detail": 0, "cause": odd}, w
w = json.load(open(sys.argv[2]))
assert w == {"name": "plain", "outcome": "timeout", "reason": "none",
             "detail": 0, "cause": ""}, w
print("ok")
PY
)
expect_eq "wait --json content" "$got" ok

# Seconds that are not a number (NaN passed the range check once).
for opt in "wait /nowhere t --timeout nan" "wait /nowhere t --timeout -1" \
           "run /nowhere t --grace nan -- true" "trigger /nowhere t --connect-timeout 1e10"; do
  # shellcheck disable=SC2086
  "$cli" $opt >/dev/null 2>&1
  expect_eq "refused: $opt" "$?" 64
done

# A name given twice to serve: a clear error, exit 3, and no server left.
"$cli" serve "$dir/twice.sock" a b a >"$dir/twice.out" 2>&1
expect_eq "serve a name twice: exit" "$?" 3
expect_eq "serve a name twice: says so" \
  "$(grep -c "token 'a': given twice" "$dir/twice.out")" 1
expect_eq "serve a name twice: no socket left" "$(test -e "$dir/twice.sock" && echo yes || echo no)" no

# Bash completion (the installed file), without bash-completion loaded.
# shellcheck source=cancel-token.bash
source "$(dirname "$0")/cancel-token.bash"
complete_words() { # WORDS...: complete the last one
  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
  _cancel_token
  echo "${COMPREPLY[*]}"
}
expect_eq "complete a subcommand" "$(complete_words cancel-token wa)" wait
expect_eq "complete status options" "$(complete_words cancel-token status /x --j)" --json
expect_eq "complete serve options" "$(complete_words cancel-token serve /x a --allow-a)" --allow-any-uid
expect_eq "nothing after run's --" "$(complete_words cancel-token run /x a -- --he)" ""
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
