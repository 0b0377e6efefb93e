#!/usr/bin/env bash
# reliability.sh runs the reliability suite (test/reliability) in its full
# form: the faults under steady load with a long control-plane outage,
# and/or the soak. The short form is the plain `go test
# ./test/reliability/` that CI runs (outage 15 s, ~3 minutes).
#
#   bench/reliability.sh [--outage 10m] [--rps 500] [--faults a,b] [--skew 5m] [--skew-cert-ttl 1h] [--soak 30m] [--no-faults] [--out DIR]
#
#   --outage D    control plane unreachable for D (the outage mesh's
#                 certificates live 2.5 D, see docs/reliability.md)
#   --rps N       total steady load over the two pairs
#   --faults LIST only these faults (names: go test ./test/reliability -args -h)
#   --skew D      clock-skew fault: proxies run D ahead of and behind the CA
#   --skew-cert-ttl D  the skew mesh's certificate lifetime (1h: zero
#                 failures expected; 10s: see docs/reliability.md)
#   --soak D      also run the soak for D (500 rps, 10 s certificates, a
#                 policy edit every 10 s, samples every 10 s)
#   --no-faults   only the soak
#   --out DIR     results (default bench/results/reliability-RUN): faults.md,
#                 soak.csv, soak.svg, soak-summary.md, fortio's logs and
#                 JSON, machine.txt, test.log
#
# Root (as CI and this machine run) adds the faults that need it: the
# data dir on a tmpfs made read-only or full, and the partition between
# two network namespaces of `zmesh up --capture`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

OUTAGE=10m RPS=500 FAULTS= SOAK= RUN_FAULTS=1 SKEW=5m SKEW_TTL=1h
OUT=$ROOT/bench/results/reliability-$(date -u +%Y%m%dT%H%M%SZ)
while (($#)); do
	case $1 in
	--outage) OUTAGE=$2; shift 2 ;;
	--rps) RPS=$2; shift 2 ;;
	--faults) FAULTS=$2; shift 2 ;;
	--skew) SKEW=$2; shift 2 ;;
	--skew-cert-ttl) SKEW_TTL=$2; shift 2 ;;
	--soak) SOAK=$2; shift 2 ;;
	--no-faults) RUN_FAULTS=0; shift ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "reliability.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
mkdir -p "$OUT"

# The machine, as the results table records it.
{
	echo "date: $(date -u +%FT%TZ)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel: $(uname -r)"
	echo "go: $(go version)"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

run=()
((RUN_FAULTS)) && run+=(TestFaults)
[[ -n $SOAK ]] && run+=(TestSoak)
((${#run[@]})) || { echo "reliability.sh: nothing to run" >&2; exit 2; }
pattern="^($(IFS='|'; echo "${run[*]}"))\$"

set +e
go test -count=1 -v -timeout 6h -run "$pattern" ./test/reliability/ -args \
	-outage "$OUTAGE" -rps "$RPS" -faults "$FAULTS" -soak "${SOAK:-0}" -out "$OUT" \
	-skew "$SKEW" -skew-cert-ttl "$SKEW_TTL" \
	2>&1 | grep --line-buffered -v '^stdout: \|level=' | tee "$OUT/test.log"
rc=${PIPESTATUS[0]}
set -e
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
cat "$OUT/machine.txt"
echo "reliability.sh: results in ${OUT#"$ROOT"/}"
exit "$rc"
