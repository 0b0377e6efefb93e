#!/usr/bin/env bash
# latency.sh measures the latency and resources zmesh's data plane adds,
# in one run on this machine, the way Istio's perf tests do: fortio, open
# loop at a fixed rate, against
#   direct  the echo app alone:    fortio -> zmesh echo
#   mesh    a proxy pair on mTLS:  fortio -> client proxy -> mTLS -> server proxy -> zmesh echo
# (bench/mesh: STRICT mTLS and an ALLOW policy on the server, started with
# `zmesh up`; fortio plays the client app and sends to the client
# workload's outbound listener with Host: server.bench.svc.cluster.local).
#
# It prints a markdown summary (percentiles, the latency the mesh adds,
# achieved qps, errors, RSS and CPU of every process during the load) and
# keeps the raw results in bench/results/RUN/. Everything it starts, it
# stops, also on failure or Ctrl-C.
#
# Settings (environment):
#   DURATION=30s      measured load per case
#   WARMUP=5s         unrecorded load before each case (0 to skip)
#   QPS=1000 CONNECTIONS=16 SIZE=1024
#   CASES="direct mesh"
#   MESH_DIR=bench/mesh
#   ZMESH=            a zmesh binary to use instead of building ./cmd/zmesh
#   ZMESH_COMMIT=     the commit that binary was built from, for the report
#   READY_TIMEOUT=120 seconds to wait for `zmesh: ready`
# Smoke run: DURATION=5s WARMUP=1s bash bench/latency.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

FORTIO_VERSION=1.66.2
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-5s}
QPS=${QPS:-1000}
CONNECTIONS=${CONNECTIONS:-16}
SIZE=${SIZE:-1024}
CASES=${CASES:-direct mesh}
MESH_DIR=${MESH_DIR:-bench/mesh}
READY_TIMEOUT=${READY_TIMEOUT:-120}
ZMESH=${ZMESH:-}
SERVER_HOST=server.bench.svc.cluster.local

BIN=$ROOT/bench/.bin
RUN=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$RUN
mkdir -p "$BIN" "$OUT"

log() { printf 'latency.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
# started holds every background process this script started, in start
# order; cleanup stops them newest first: SIGTERM, then SIGKILL after a
# grace period (zmesh up needs a few seconds to stop its children).
started=()

stop_pid() { # pid grace_seconds
	local pid=$1 grace=$2 i
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || true
		forget "$pid"
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < grace * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "process $pid did not stop in ${grace}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	forget "$pid"
}

# forget drops a reaped pid from started, so that cleanup can never signal
# an unrelated process that was given the same pid later.
forget() {
	local i
	for i in "${!started[@]}"; do
		[[ ${started[i]} == "$1" ]] && unset 'started[i]'
	done
	started=("${started[@]}")
}

cleanup() {
	local rc=$? i pids
	trap - EXIT INT TERM
	pids=("${started[@]}")
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		stop_pid "${pids[i]}" 20
	done
	# zmesh up's children die with it (parent-death signal); make sure.
	for pid in "${mesh_children[@]}"; do
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	done
	if ((rc != 0)); then
		log "failed (exit $rc); logs in ${OUT#"$ROOT"/}"
	fi
	exit "$rc"
}
mesh_children=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
FORTIO=$BIN/fortio
if [[ ! -x $FORTIO ]] || [[ $("$FORTIO" version 2>/dev/null) != "$FORTIO_VERSION"* ]]; then
	log "installing fortio v$FORTIO_VERSION into ${BIN#"$ROOT"/}"
	GOBIN=$BIN go install "fortio.org/fortio@v$FORTIO_VERSION"
fi
ZMESH_BUILT=
if [[ -z $ZMESH ]]; then
	ZMESH_BUILT=1
	log "building zmesh"
	go build -o "$BIN/zmesh" ./cmd/zmesh
	ZMESH=$BIN/zmesh
fi

# ---------------------------------------------------------------- run description
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
{
	echo "STARTED=$(date -u +%Y-%m-%dT%H:%MZ)"
	echo "FORTIO_VERSION=$FORTIO_VERSION"
	echo "QPS=$QPS"
	echo "CONNECTIONS=$CONNECTIONS"
	echo "SIZE=$SIZE"
	echo "DURATION=$DURATION"
	echo "WARMUP=$WARMUP"
	echo "NPROC=$(nproc)"
	echo "CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "KERNEL=$(uname -r)"
	echo "GO_VERSION=$(go env GOVERSION)"
	echo "CLK_TCK=$(getconf CLK_TCK)"
	if [[ -n $ZMESH_BUILT ]]; then
		echo "ZMESH=built from the working tree at $(git describe --always --dirty 2>/dev/null || echo 'no commit')"
	else
		echo "ZMESH=$ZMESH${ZMESH_COMMIT:+ (commit $ZMESH_COMMIT)}"
	fi
	echo "LOADAVG_BEFORE=$(loadavg)"
} >"$OUT/meta.env"

# ---------------------------------------------------------------- sampling
# The sampler shares the CPUs under test, so it reads /proc with shell
# builtins only (no process per sample) and looks processes up by name
# only when it starts or when one has gone away.

# mesh_child WORDS: the pid of the zmesh up child whose command line holds
# every comma-separated word of WORDS.
mesh_child() {
	local pid word ok words args
	IFS=, read -ra words <<<"$1"
	for pid in $(pgrep -P "$UP_PID" 2>/dev/null); do
		mapfile -d '' args <"/proc/$pid/cmdline" 2>/dev/null || continue
		ok=1
		for word in "${words[@]}"; do
			[[ " ${args[*]} " == *" $word "* ]] || { ok=0; break; }
		done
		if ((ok)); then
			echo "$pid"
			return 0
		fi
	done
	return 1
}

# sample CASE LABEL=PID|LABEL=@WORDS ... appends a line per process every
# second to samples.tsv: case, label, pid, unix ms, VmRSS KiB, RssAnon
# KiB, utime+stime ticks, Pss KiB (from smaps_rollup: shared pages counted
# once across the processes that share them); and a line "machine" with
# the busy ticks of all CPUs. @WORDS is looked up with mesh_child, again
# whenever the process is gone, so a restarted proxy is still followed.
sample() {
	local case=$1 spec
	shift
	local -a labels targets pids
	for spec in "$@"; do
		labels+=("${spec%%=*}")
		targets+=("${spec#*=}")
		pids+=("")
	done
	while :; do
		sample_once >>"$OUT/samples.tsv"
		sleep 1
	done
}

# sample_once prints one sample of every process of sample's lists (its
# caller's locals) and of the machine.
sample_once() {
	local i now key val rss anon pss stat user nice system irq softirq steal
	local -a f
	now=${EPOCHREALTIME/[.,]/}
	now=$((now / 1000))
	for i in "${!labels[@]}"; do
		if [[ -z ${pids[i]} || ! -e /proc/${pids[i]} ]]; then
			if [[ ${targets[i]} == @* ]]; then
				pids[i]=$(mesh_child "${targets[i]#@}") || continue
			else
				pids[i]=${targets[i]}
			fi
		fi
		rss= anon=
		while read -r key val _; do
			case $key in
			VmRSS:) rss=$val ;;
			RssAnon:) anon=$val ;;
			esac
		done 2>/dev/null <"/proc/${pids[i]}/status" || continue
		{ read -r stat <"/proc/${pids[i]}/stat"; } 2>/dev/null || continue
		[[ -n $rss && -n $anon ]] || continue
		pss=0
		while read -r key val _; do
			[[ $key == Pss: ]] && pss=$val && break
		done 2>/dev/null <"/proc/${pids[i]}/smaps_rollup"
		# Fields after "pid (comm) ": state is f[0], utime f[11], stime f[12].
		read -ra f <<<"${stat##*) }"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "${labels[i]}" "${pids[i]}" "$now" "$rss" "$anon" $((f[11] + f[12])) "$pss"
	done
	# All CPUs' busy ticks, to tell the benchmark's CPU from other work's.
	read -r _ user nice system _ _ irq softirq steal _ </proc/stat
	printf '%s\tmachine\t-\t%s\t0\t0\t%s\t0\n' "$case" "$now" $((user + nice + system + irq + softirq + steal))
}

# ---------------------------------------------------------------- load
# load CASE URL SAMPLESPEC... : warm-up, then the measured run with the
# sampler running alongside.
load() {
	local case=$1 url=$2 fpid spid
	shift 2
	local args=(-qps "$QPS" -c "$CONNECTIONS" -uniform -nocatchup -r 0.0001 -p 50,90,99,99.9
		-H "Host: $SERVER_HOST")
	# One request first, so that a broken path fails here with a reason
	# rather than as a page of errors from the load.
	"$FORTIO" curl -H "Host: $SERVER_HOST" "$url" >/dev/null 2>"$OUT/$case.check.txt" ||
		die "$case: GET $url (Host: $SERVER_HOST) failed: $(tail -c 300 "$OUT/$case.check.txt")"
	if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
		log "$case: warm-up $WARMUP"
		"$FORTIO" load "${args[@]}" -t "$WARMUP" "$url" >"$OUT/$case.warmup.txt" 2>&1 ||
			die "$case: warm-up failed, see ${OUT#"$ROOT"/}/$case.warmup.txt"
	fi
	log "$case: $QPS qps, $CONNECTIONS connections, $DURATION -> $url"
	"$FORTIO" load "${args[@]}" -t "$DURATION" -json "$OUT/$case.json" "$url" >"$OUT/$case.fortio.txt" 2>&1 &
	fpid=$!
	started+=("$fpid")
	sample "$case" "fortio=$fpid" "$@" &
	spid=$!
	started+=("$spid")
	if ! wait "$fpid"; then
		die "$case: fortio failed, see ${OUT#"$ROOT"/}/$case.fortio.txt"
	fi
	forget "$fpid"
	stop_pid "$spid" 2
	sed -n 's/^All done/  &/p' "$OUT/$case.fortio.txt" >&2
}

# wait_for_line FILE REGEX PID SECONDS: until FILE has a line matching
# REGEX; fails if PID exits first or time runs out.
wait_for_line() {
	local file=$1 re=$2 pid=$3 secs=$4 i
	for ((i = 0; i < secs * 10; i++)); do
		grep -qE "$re" "$file" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

run_direct() {
	local pid addr
	"$ZMESH" echo --listen 127.0.0.1:0 --name direct >"$OUT/echo.log" 2>&1 &
	pid=$!
	started+=("$pid")
	wait_for_line "$OUT/echo.log" 'echo: serving' "$pid" 10 ||
		die "zmesh echo did not start: $(tail -5 "$OUT/echo.log")"
	addr=$(sed -n 's/.*echo: serving.* addr=\([^ ]*\).*/\1/p' "$OUT/echo.log" | head -1)
	[[ -n $addr ]] || die "no address in $OUT/echo.log"
	load direct "http://$addr/size/$SIZE" "echo=$pid"
	stop_pid "$pid" 10
}

run_mesh() {
	local outbound
	log "mesh: zmesh up -f $MESH_DIR"
	"$ZMESH" up -f "$MESH_DIR" >"$OUT/up.out" 2>"$OUT/up.log" &
	UP_PID=$!
	started+=("$UP_PID")
	wait_for_line "$OUT/up.out" '^zmesh: ready' "$UP_PID" "$READY_TIMEOUT" ||
		die "zmesh up did not print 'zmesh: ready' in ${READY_TIMEOUT}s:
$(cat "$OUT/up.out")
$(tail -20 "$OUT/up.log")"
	mapfile -t mesh_children < <(pgrep -P "$UP_PID")
	outbound=$(sed -n 's|^zmesh: workload bench/client .*outbound=\([^ ]*\).*|\1|p' "$OUT/up.out")
	[[ -n $outbound ]] || die "no outbound= for bench/client in $OUT/up.out"
	load mesh "http://$outbound/size/$SIZE" \
		"client proxy=@proxy,--name client,--namespace bench" \
		"server proxy=@proxy,--name server,--namespace bench" \
		"server app=@echo,--name server" \
		"controlplane=@controlplane" \
		"zmesh up=$UP_PID"
	stop_pid "$UP_PID" 20
}

for c in $CASES; do
	case $c in
	direct) run_direct ;;
	mesh) run_mesh ;;
	*) die "unknown case $c (want direct, mesh)" ;;
	esac
done

echo "LOADAVG_AFTER=$(loadavg)" >>"$OUT/meta.env"
go run ./bench/report -dir "$OUT"
cp "$OUT/summary.md" "$ROOT/bench/results/latest.md"
log "results in ${OUT#"$ROOT"/}"
