#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Replays the README's terminal session (the ```console block after the
# line "<!-- session: replayed by tests/install/readme_session.sh -->")
# and fails unless every command prints exactly what the README shows.
#
# usage: readme_session.sh README.md DIR-WITH-cancel-token
#
# The block is read as a transcript of several terminals:
#   "terminal N$ CMD"   start CMD in terminal N (after N's previous command
#                       has exited, as a shell would); the lines that follow,
#                       up to a blank line or the next "terminal" line, are
#                       what CMD prints (stdout and stderr together).
#   "terminal N$ ^C"    send SIGINT to terminal N's running command.
#   "terminal N$   # …" nothing typed: the lines that follow are more output
#                       of terminal N's running command.
# Text after "  # " is a comment.  The socket path /tmp/demo.sock is
# replaced by one in a fresh mktemp directory.  Each expectation is waited
# for: the command's output must become exactly the lines shown so far
# (more or different output fails at once, and so does a command that
# exits short of them).  A hang is caught by the ctest time limit.
set -u
readme=$1
bindir=$2
export PATH="$bindir:$PATH"
dir=$(mktemp -d "${TMPDIR:-/tmp}/ct-session.XXXXXX")
sock=$dir/demo.sock
declare -A pid file want
cleanup() {
  for t in "${!pid[@]}"; do
    kill -KILL -- "-${pid[$t]}" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT

fail() {
  echo "readme_session: FAILED: $*"
  exit 1
}

block=$(awk '/<!-- session: replayed by tests\/install\/readme_session.sh -->/ {f = 1; next}
             f && /^```console/ {g = 1; next}
             g && /^```/ {exit}
             g {print}' "$readme")
[ -n "$block" ] || fail "no session block in $readme"

n=0        # commands started
cur=""     # the terminal whose output the following lines belong to
pending="" # lines not yet checked for terminal $cur

# check: wait until terminal $cur's output is exactly want[$cur].
check() {
  [ -n "$cur" ] && [ -n "${file[$cur]:-}" ] || return 0
  local t=$cur got
  while :; do
    got=$(cat "${file[$t]}"; echo x)
    got=${got%x}
    if [ "$got" = "${want[$t]}" ]; then
      return 0
    fi
    if [ "${want[$t]#"$got"}" = "${want[$t]}" ] && [ -n "$got" ]; then
      printf 'terminal %s printed:\n%s--- the README shows:\n%s' "$t" "$got" "${want[$t]}"
      fail "terminal $t's output differs"
    fi
    if ! kill -0 "${pid[$t]}" 2>/dev/null; then
      got=$(cat "${file[$t]}"; echo x)
      got=${got%x}
      [ "$got" = "${want[$t]}" ] && return 0
      printf 'terminal %s printed:\n%s--- the README shows:\n%s' "$t" "$got" "${want[$t]}"
      fail "terminal $t's command exited without printing what the README shows"
    fi
    sleep 0.02
  done
}

while IFS= read -r line; do
  line=${line//\/tmp\/demo.sock/$sock}
  if [[ $line =~ ^terminal\ ([0-9]+)\$\ ?(.*)$ ]]; then
    check
    t=${BASH_REMATCH[1]}
    cmd=${BASH_REMATCH[2]}
    cmd=$(sed -E 's/[[:space:]]+#[^$]*$//; s/^[[:space:]]+//' <<<"$cmd")
    cur=$t
    if [ -z "$cmd" ]; then
      [ -n "${pid[$t]:-}" ] || fail "terminal $t: output with no command"
    elif [ "$cmd" = "^C" ]; then
      [ -n "${pid[$t]:-}" ] || fail "terminal $t: ^C with no command"
      kill -INT -- "-${pid[$t]}" || fail "terminal $t: nothing to interrupt"
    else
      if [ -n "${pid[$t]:-}" ]; then # a shell runs one command at a time
        while kill -0 "${pid[$t]}" 2>/dev/null; do sleep 0.02; done
      fi
      n=$((n + 1))
      file[$t]=$dir/out.$n
      want[$t]=""
      echo "terminal $t\$ $cmd"
      : >"${file[$t]}" # exists before the command runs
      setsid bash -c "$cmd" >>"${file[$t]}" 2>&1 </dev/null &
      pid[$t]=$!
    fi
  elif [ -z "$line" ]; then
    check
    cur=""
  else
    [ -n "$cur" ] || fail "output line with no terminal: $line"
    want[$cur]+="$line"$'\n'
  fi
done <<<"$block"
check
for t in "${!pid[@]}"; do
  while kill -0 "${pid[$t]}" 2>/dev/null; do sleep 0.02; done
done
echo "readme_session: $n commands replayed, every output as printed"
