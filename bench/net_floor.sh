#!/bin/bash
# SPDX-License-Identifier: MIT
# net_floor.sh -- bench/net_floor (the kernel alone) and bench/net_bench (our
# library) on the same fan-out sizes, interleaved: for each size and
# transport, REPS times [net_floor: 3 rounds of each variant, a b c a b c
# ...; net_bench: 3 rounds], who goes first alternating; then the medians
# and [min..max] over every round pooled, with each round's CPU (see
# bench/README.md, "net_floor: what the kernel alone costs").
#
# usage: bench/net_floor.sh BUILD_DIR [REPS] [OUT]
#        BUILD_DIR holds bench/net_floor and bench/net_bench (a Release
#        build with -DCT_BUILD_BENCH=ON); REPS defaults to 3 (9 rounds of
#        each); OUT (default: a mktemp file) keeps every raw line.
#        CFGS="unix 1000 10,tcp 1000 10" (transport clients processes,
#        comma-separated) picks the sizes; default 1,000 in 10 processes and
#        10,000 in 20, each over a Unix socket and TCP.
set -euo pipefail
b=${1:?usage: bench/net_floor.sh BUILD_DIR [REPS] [OUT]}/bench
reps=${2:-3}
out=${3:-$(mktemp)}
for t in net_floor net_bench; do
  [ -x "$b/$t" ] || { echo "net_floor.sh: no $b/$t (build it first)" >&2; exit 2; }
done
IFS=, read -ra cfgs <<< "${CFGS:-unix 1000 10,tcp 1000 10,unix 10000 20,tcp 10000 20}"
: > "$out"
for cfg in "${cfgs[@]}"; do
  read -r tr c p <<< "$cfg"
  for rep in $(seq 1 "$reps"); do
    echo "# cfg $tr $c rep $rep $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out"
    fl() { "$b/net_floor" --clients "$c" --procs "$p" --rounds 3 --transport "$tr" --raw 1 >> "$out"; }
    nb() { "$b/net_bench" --only "fanout_$tr" --clients "$c" --procs "$p" --rounds 3 \
             --samples 50 --stats 1 | sed "s/^/NB $tr$c /" >> "$out"; }
    if [ $((rep % 2)) = 1 ]; then fl; nb; else nb; fl; fi
  done
done
echo "# end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out"
echo "raw lines: $out"
python3 - "$out" "$(nproc)" <<'PY'
import re, statistics as st, sys
from collections import defaultdict
path, cpus = sys.argv[1], int(sys.argv[2])
fl = defaultdict(lambda: defaultdict(list))
nb, nbcpu = defaultdict(list), defaultdict(list)
for line in open(path):
    if line.startswith('# raw,'):
        _, cfg, v, _r, last, first, cpu, scpu, _sw = line.strip().split(',')
        fl[cfg][v].append((float(last), float(first), float(cpu), float(scpu)))
    elif line.startswith('NB '):
        _, cfg, rest = line.split(' ', 2)
        m = re.match(r'net_fanout_\w*?_last,ms,([\d.]+),([\d.]+),([\d.]+)', rest)
        if m:  # 3 rounds: median, min and max are the three rounds
            nb[cfg] += [float(x) for x in m.groups()]
        m = re.search(r'([\d.]+) us CPU; clients .*?([\d.]+) us CPU', rest)
        if m:
            nbcpu[cfg].append(float(m.group(1)) + float(m.group(2)))
def f(v, d=2):
    v = sorted(v)
    return f'{st.median(v):.{d}f} [{v[0]:.{d}f}..{v[-1]:.{d}f}]'
print(f'| size | variant | rounds | trigger to last read, ms | CPU of the round, ms '
      f'(server) | CPU / {cpus} CPUs, ms | CPU per notice, us |')
print('|---|---|---:|---:|---:|---:|---:|')
names = {'a': 'a: as our library (send; epoll LT 64, recv)', 'b': 'b: plain, tuned',
         'c': 'c: io_uring both sides'}
for cfg in fl:
    n = int(re.sub(r'\D', '', cfg))
    for v in sorted(fl[cfg]):
        r = fl[cfg][v]
        cpu = [x[2] for x in r]
        print(f'| {cfg} | {names[v]} | {len(r)} | {f([x[0] for x in r])} | '
              f'{f(cpu)} ({st.median([x[3] for x in r]):.2f}) | '
              f'{f([c / cpus for c in cpu])} | {st.median(cpu) / n * 1000:.2f} |')
    if nb[cfg]:
        print(f'| {cfg} | net_bench (the library) | {len(nb[cfg])} | {f(nb[cfg])} | | '
              f'{f([c * n / 1000 / cpus for c in nbcpu[cfg]])} | {f(nbcpu[cfg])} |')
PY
