#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# zk-ensemble.sh -- a real 3-member Apache ZooKeeper 3.8 ensemble on loopback,
# for tests and benchmarks, from Debian's `zookeeper` package: one JVM per
# member with a capped heap, no systemd, every member stopped by its own pid.
#
# Interface (stable: tests/zk, scripts/test-zk.sh, bench/ and the Python
# test fixture use it):
#
#   zk-ensemble.sh start DIR         create DIR if needed, choose free ports,
#                                    start members 1..3, wait until one leader
#                                    and two followers answer `srvr`, print the
#                                    connect string on stdout and exit 0.
#                                    Exit 1 (with the members' logs quoted on
#                                    stderr) if no quorum formed in time.
#   zk-ensemble.sh stop DIR          stop every member (TERM, then KILL after
#                                    5 s); exit 0 even if none was running.
#   zk-ensemble.sh status DIR        one line per member: "N PID MODE" (MODE:
#                                    leader, follower, down, or not-serving);
#                                    exit 0 iff a quorum (leader + follower)
#                                    answers.
#   zk-ensemble.sh connect DIR       print the connect string
#                                    ("127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3").
#   zk-ensemble.sh port DIR N        print member N's client port.
#   zk-ensemble.sh leader DIR        print the member number of the leader
#                                    (exit 1 if there is none now).
#   zk-ensemble.sh kill DIR N [SIG]  send SIG (default KILL) to member N only,
#                                    and for KILL/TERM wait until it is gone.
#   zk-ensemble.sh start DIR N       start member N again (same ports, same
#                                    data); does not wait for a quorum.
#   zk-ensemble.sh wait DIR [SECS]   wait until a quorum answers (default 60 s).
#   zk-ensemble.sh wait-all DIR [SECS]  wait until all three members serve
#                                    (one leader, two followers).
#
# Files in DIR: ports (one line per member: "N CLIENT PEER ELECTION"),
# connect (the connect string), mN/zoo.cfg, mN/data/myid, mN/pid, mN/log.
#
# Settings: tickTime from $ZK_TICK_MS (default 200 ms), so session timeouts
# can be negotiated between 2 and 20 ticks (400 ms .. 4 s by default).
# forceSync=no: a test ensemble does not fsync (members are killed, the
# machine is not; a SIGKILLed member loses nothing that reached the page
# cache).  Ports are chosen at random among free ones below the kernel's
# ephemeral range, so several ensembles may run on one machine at once; a
# start that loses a port race is retried with new ports.
set -u

ZK_JAR=${ZK_JAR:-/usr/share/java/zookeeper.jar}
SLF4J_JAR=${SLF4J_JAR:-/usr/share/java/slf4j-simple.jar}
TICK=${ZK_TICK_MS:-200}
JAVA=${JAVA:-java}

die() { echo "zk-ensemble: $*" >&2; exit 2; }

usage() {
  sed -n '/^# Interface/,/^# Files/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Is TCP port $1 on 127.0.0.1 listened on (or otherwise in use)?
port_busy() {
  ss -Htan "sport = :$1" 2>/dev/null | grep -q . && return 0
  return 1
}

pick_ports() { # prints 9 distinct free ports
  local lo=10000 hi=32000 got=() p tries=0
  if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
    read -r elo _ </proc/sys/net/ipv4/ip_local_port_range
    [ "$elo" -gt 12000 ] && hi=$((elo - 1))
  fi
  while [ ${#got[@]} -lt 9 ]; do
    tries=$((tries + 1))
    [ $tries -gt 1000 ] && die "no free ports found"
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
    case " ${got[*]:-} " in *" $p "*) continue ;; esac
    port_busy "$p" && continue
    got+=("$p")
  done
  echo "${got[@]}"
}

member_pid() { # pid of member $2 in dir $1 if it is alive and really ours
  local f="$1/m$2/pid" pid
  [ -r "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$1/m$2/zoo.cfg" ||
    return 1
  echo "$pid"
}

client_port() { awk -v n="$2" '$1 == n { print $2 }' "$1/ports"; }

srvr_mode() { # mode of the member listening on port $1, or "down"
  local out
  out=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && echo srvr >&3 && cat <&3" 2>/dev/null)
  case "$out" in
    *"Mode: leader"*) echo leader ;;
    *"Mode: follower"*) echo follower ;;
    *"Mode: standalone"*) echo standalone ;;
    "") echo down ;;
    *) echo not-serving ;;
  esac
}

write_config() { # dir
  local d=$1 n ports
  read -r -a ports <<<"$(pick_ports)"
  : >"$d/ports"
  for n in 1 2 3; do
    local i=$(((n - 1) * 3))
    echo "$n ${ports[$i]} ${ports[$((i + 1))]} ${ports[$((i + 2))]}" >>"$d/ports"
  done
  for n in 1 2 3; do
    mkdir -p "$d/m$n/data"
    echo "$n" >"$d/m$n/data/myid"
    {
      echo "tickTime=$TICK"
      echo "initLimit=20"
      echo "syncLimit=10"
      echo "dataDir=$d/m$n/data"
      echo "clientPort=$(client_port "$d" "$n")"
      echo "clientPortAddress=127.0.0.1"
      echo "admin.enableServer=false"
      echo "4lw.commands.whitelist=srvr"
      echo "forceSync=no"
      echo "maxClientCnxns=0"
      echo "preAllocSize=4096"
      local m
      for m in 1 2 3; do
        awk -v m="$m" '$1 == m { printf "server.%s=127.0.0.1:%s:%s\n", $1, $3, $4 }' "$d/ports"
      done
    } >"$d/m$n/zoo.cfg"
  done
  awk '{ printf "%s127.0.0.1:%s", (NR > 1 ? "," : ""), $2 } END { print "" }' \
    "$d/ports" >"$d/connect"
}

start_member() { # dir n
  local d=$1 n=$2
  member_pid "$d" "$n" >/dev/null && return 0
  # Members stay in the caller's process group: if the caller is killed
  # wholesale, so are they (no orphaned JVMs).
  "$JAVA" -Xms96m -Xmx96m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Xss512k -XX:-UsePerfData \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -Dzookeeper.jmx.log4j.disable=true \
    -cp "$ZK_JAR:$SLF4J_JAR" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/m$n/zoo.cfg" \
    </dev/null >>"$d/m$n/log" 2>&1 &
  echo $! >"$d/m$n/pid"
}

quorum_up() { # dir: 0 iff one leader and two followers answer
  local d=$1 n l=0 f=0
  for n in 1 2 3; do
    case $(srvr_mode "$(client_port "$d" "$n")") in
      leader) l=$((l + 1)) ;;
      follower) f=$((f + 1)) ;;
    esac
  done
  [ $l -eq 1 ] && [ $f -eq 2 ]
}

quorum_some() { # dir: 0 iff a leader and at least one follower answer
  local d=$1 n l=0 f=0
  for n in 1 2 3; do
    case $(srvr_mode "$(client_port "$d" "$n")") in
      leader) l=$((l + 1)) ;;
      follower) f=$((f + 1)) ;;
    esac
  done
  [ $l -eq 1 ] && [ $f -ge 1 ]
}

stop_member() { # dir n [signal]
  local d=$1 n=$2 sig=${3:-TERM} pid i
  pid=$(member_pid "$d" "$n") || return 0
  kill -"$sig" "$pid" 2>/dev/null
  case $sig in TERM | KILL | 15 | 9) ;; *) return 0 ;; esac
  for i in $(seq 50); do
    member_pid "$d" "$n" >/dev/null || { rm -f "$d/m$n/pid"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  for i in $(seq 50); do
    member_pid "$d" "$n" >/dev/null || { rm -f "$d/m$n/pid"; return 0; }
    sleep 0.1
  done
  echo "zk-ensemble: member $n (pid $pid) did not exit" >&2
  return 1
}

stop_all() {
  local d=$1 n
  for n in 1 2 3; do stop_member "$d" "$n" TERM & done
  wait
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
case $dir in /*) ;; *) dir="$(pwd)/$dir" ;; esac

case $cmd in
  start)
    if [ -n "${3:-}" ]; then
      [ -r "$dir/ports" ] || die "no ensemble in $dir"
      case $3 in 1 | 2 | 3) ;; *) die "member must be 1, 2 or 3" ;; esac
      start_member "$dir" "$3"
      exit 0
    fi
    command -v "$JAVA" >/dev/null || die "java not found (apt-get install default-jre-headless)"
    [ -r "$ZK_JAR" ] || die "$ZK_JAR not found (apt-get install zookeeper)"
    [ -r "$SLF4J_JAR" ] || die "$SLF4J_JAR not found (apt-get install libslf4j-java)"
    mkdir -p "$dir" || die "cannot create $dir"
    if [ -r "$dir/ports" ] && member_pid "$dir" 1 >/dev/null; then
      die "an ensemble is already running in $dir (stop it first)"
    fi
    for attempt in 1 2 3; do
      write_config "$dir"
      for n in 1 2 3; do start_member "$dir" "$n"; done
      # The JVMs need 1.5-3 s on an idle 2-CPU machine; allow much more on a
      # busy one.
      for i in $(seq 300); do
        if quorum_up "$dir"; then
          cat "$dir/connect"
          exit 0
        fi
        # A member that died at once (a port taken meanwhile): new ports.
        dead=0
        for n in 1 2 3; do member_pid "$dir" "$n" >/dev/null || dead=1; done
        [ $dead -eq 1 ] && [ "$i" -gt 5 ] && break
        sleep 0.2
      done
      stop_all "$dir"
      if ! grep -qi "address already in use" "$dir"/m*/log 2>/dev/null; then
        break
      fi
      for n in 1 2 3; do : >"$dir/m$n/log"; done
    done
    echo "zk-ensemble: no quorum formed in $dir; member logs follow" >&2
    for n in 1 2 3; do
      echo "--- member $n" >&2
      tail -n 20 "$dir/m$n/log" >&2
    done
    exit 1
    ;;
  stop)
    [ -r "$dir/ports" ] || exit 0
    stop_all "$dir"
    ;;
  status)
    [ -r "$dir/ports" ] || die "no ensemble in $dir"
    for n in 1 2 3; do
      pid=$(member_pid "$dir" "$n") || pid=-
      echo "$n $pid $(srvr_mode "$(client_port "$dir" "$n")")"
    done
    quorum_some "$dir"
    ;;
  connect)
    [ -r "$dir/connect" ] || die "no ensemble in $dir"
    cat "$dir/connect"
    ;;
  port)
    [ -r "$dir/ports" ] || die "no ensemble in $dir"
    p=$(client_port "$dir" "${3:-}")
    [ -n "$p" ] || die "member must be 1, 2 or 3"
    echo "$p"
    ;;
  leader)
    [ -r "$dir/ports" ] || die "no ensemble in $dir"
    for n in 1 2 3; do
      if [ "$(srvr_mode "$(client_port "$dir" "$n")")" = leader ]; then
        echo "$n"
        exit 0
      fi
    done
    exit 1
    ;;
  kill)
    [ -r "$dir/ports" ] || die "no ensemble in $dir"
    case ${3:-} in 1 | 2 | 3) ;; *) die "member must be 1, 2 or 3" ;; esac
    stop_member "$dir" "$3" "${4:-KILL}"
    ;;
  wait)
    [ -r "$dir/ports" ] || die "no ensemble in $dir"
    secs=${3:-60}
    for i in $(seq $((secs * 5))); do
      quorum_some "$dir" && exit 0
      sleep 0.2
    done
    echo "zk-ensemble: no quorum in $dir after $secs s" >&2
    exit 1
    ;;
  wait-all)
    [ -r "$dir/ports" ] || die "no ensemble in $dir"
    secs=${3:-60}
    for i in $(seq $((secs * 5))); do
      quorum_up "$dir" && exit 0
      sleep 0.2
    done
    echo "zk-ensemble: not all members serve in $dir after $secs s" >&2
    exit 1
    ;;
  *) usage ;;
esac
