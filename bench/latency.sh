#!/usr/bin/env bash
# latency.sh measures the latency and resources zmesh's data plane adds,
# in one run on this machine, the way Istio's perf tests do: fortio, open
# loop at a fixed rate, against
#   direct  the echo app alone:    fortio -> zmesh echo
#   mesh    a proxy pair on mTLS:  fortio -> client proxy -> mTLS -> server proxy -> zmesh echo
#   capture the same pair with transparent capture (`zmesh up --capture`,
#           root): fortio runs in the client pod's network namespace with
#           no proxy setting and sends to the server pod's app address;
#           the kernel redirects it to the client proxy, and the server
#           pod's rules hand it to the server proxy:
#                                  fortio (client pod) -> redirect -> client proxy -> mTLS
#                                  -> veth/bridge -> redirect -> server proxy -> zmesh echo (server pod)
#   haproxy the same path through a pair of HAProxy instances, a mature C
#           proxy as a peer to compare with (DESIGN §8: peers on the same
#           machine in the same run):
#                                  fortio -> haproxy client -> mTLS -> haproxy server -> zmesh echo
# (bench/mesh: STRICT mTLS and an ALLOW policy on the server, started with
# `zmesh up`; fortio plays the client app and sends to the client
# workload's outbound listener with Host: server.bench.svc.cluster.local).
#
# The haproxy case is haproxy's Debian package (installed with apt-get when
# missing and the script runs as root; if it cannot be had, the case is
# reported as skipped and the others still run). Its two instances are
# configured like the mesh's proxies (see haproxy_config): plaintext HTTP
# from fortio on loopback, mutual TLS 1.3 between them with ECDSA P-256
# certificates of a throwaway CA made for the run (server name verified,
# client certificate required and checked), HTTP/2 between them when this
# haproxy can (else HTTP/1.1 keep-alive), connections pooled and reused,
# as many threads each as there are CPUs (a zmesh proxy's GOMAXPROCS).
#
# It prints a markdown summary (percentiles, the latency the mesh adds,
# achieved qps, errors, RSS and CPU of every process during the load) and
# keeps the raw results in bench/results/RUN/, with a plot of each case's
# latency by percentile (percentiles.svg, bench/latency/plot). Everything
# it starts, it stops, also on failure or Ctrl-C.
#
# Settings (environment):
#   DURATION=30s      measured load per case
#   WARMUP=5s         unrecorded load before each case (0 to skip)
#   QPS=1000 CONNECTIONS=16 SIZE=1024
#   CASES="direct mesh capture haproxy"
#   CAPTURE_PREFIX=zmbench CAPTURE_SUBNET=10.254.77.0/24   the capture
#                     case's pod network (names on the host and addresses)
#   MESH_DIR=bench/mesh
#   ZMESH=            a zmesh binary to use instead of building ./cmd/zmesh
#   ZMESH_COMMIT=     the commit that binary was built from, for the report
#   HAPROXY=          a haproxy binary to use instead of the one on PATH
#   HAPROXY_THREADS=  threads per haproxy instance (default: CPUs, nproc)
#   HAPROXY_PEER_PROTO= h2 or http/1.1 between the haproxy instances
#                     (default: h2 when this haproxy can)
#   PEER_CERTS=       openssl or go: what makes the peers' certificates
#                     (default: openssl if installed, else go)
#   READY_TIMEOUT=120 seconds to wait for `zmesh: ready`
#   PROXY_ENV=        environment settings for the two proxies only, as
#                     NAME=VALUE words (e.g. "GOMAXPROCS=1"): an experiment
#                     with the Go runtime's settings, named in the summary;
#                     `zmesh up` then runs a wrapper that sets them
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
CASES=${CASES:-direct mesh capture haproxy}
CAPTURE_PREFIX=${CAPTURE_PREFIX:-zmbench}
CAPTURE_SUBNET=${CAPTURE_SUBNET:-10.254.77.0/24}
MESH_DIR=${MESH_DIR:-bench/mesh}
READY_TIMEOUT=${READY_TIMEOUT:-120}
ZMESH=${ZMESH:-}
PROXY_ENV=${PROXY_ENV:-}
HAPROXY=${HAPROXY:-}
HAPROXY_THREADS=${HAPROXY_THREADS:-$(nproc)}
PEER_CERTS=${PEER_CERTS:-}
HAPROXY_PEER_PROTO=${HAPROXY_PEER_PROTO:-}
SERVER_HOST=server.bench.svc.cluster.local
# The client identity the haproxy server admits (the certificate's CN).
CLIENT_NAME=client.bench

BIN=$ROOT/bench/.bin
RUN=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$RUN
mkdir -p "$BIN" "$OUT"

log() { printf 'latency.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for c in $CASES; do
	case $c in
	direct | mesh | capture | haproxy) ;;
	*) die "unknown case $c (want direct, mesh, capture, haproxy)" ;;
	esac
done
want_case() { [[ " $CASES " == *" $1 "* ]]; }

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
	# The peers' keys and certificates live only as long as the run.
	[[ -n $TMPD ]] && rm -rf -- "$TMPD"
	if ((rc != 0)); then
		log "failed (exit $rc); logs in ${OUT#"$ROOT"/}"
	fi
	exit "$rc"
}
mesh_children=()
TMPD=
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
	go build -tags grpcnotrace -trimpath -o "$BIN/zmesh" ./cmd/zmesh # as make build
	CGO_ENABLED=0 go build -tags grpcnotrace,zmesh_dataplane -trimpath -o "$BIN/zmesh-proxy" ./cmd/zmesh # the data-plane build zmesh up runs proxies with, static as make build
	ZMESH=$BIN/zmesh
fi
ZMESH_DESC=$ZMESH
# proxy_env_wrap puts a copy (a hard link when it can) of $ZMESH beside a
# zmesh-proxy script that starts the real proxy binary with $PROXY_ENV, so
# that `zmesh up`, which runs the zmesh-proxy beside itself, gives the
# settings to the proxies and to nothing else.
proxy_env_wrap() {
	local dir=$OUT/proxy-env real
	real=$(cd "$(dirname "$ZMESH")" && pwd)/zmesh-proxy
	[[ -x $real ]] || real=$(cd "$(dirname "$ZMESH")" && pwd)/$(basename "$ZMESH")
	mkdir -p "$dir"
	ln "$ZMESH" "$dir/zmesh" 2>/dev/null || cp "$ZMESH" "$dir/zmesh"
	local w
	for w in $PROXY_ENV; do
		[[ $w =~ ^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.,=:/+-]*$ ]] ||
			die "PROXY_ENV: $w is not NAME=VALUE (letters, digits and _.,=:/+- only)"
	done
	printf '#!/bin/sh\nexec env %s %q "$@"\n' "$PROXY_ENV" "$real" >"$dir/zmesh-proxy"
	chmod +x "$dir/zmesh-proxy"
	ZMESH_DESC="$ZMESH, proxies started with $PROXY_ENV"
	ZMESH=$dir/zmesh
}
[[ -z $PROXY_ENV ]] || proxy_env_wrap

# haproxy_setup finds haproxy, installing its Debian package if needed,
# and sets HAPROXY; or, when it cannot be had, HAPROXY_SKIPPED to the
# reason (one line), so that the report says why the case did not run.
HAPROXY_SKIPPED=
haproxy_setup() {
	local ilog=$OUT/haproxy-install.log
	if [[ -n $HAPROXY ]]; then
		[[ -x $HAPROXY ]] || HAPROXY_SKIPPED="HAPROXY=$HAPROXY is not an executable"
		return 0
	fi
	HAPROXY=$(PATH=$PATH:/usr/sbin:/usr/local/sbin command -v haproxy) && return 0
	HAPROXY=
	if ((EUID != 0)); then
		HAPROXY_SKIPPED="haproxy is not installed, and installing it needs root"
		return 0
	fi
	if ! command -v apt-get >/dev/null; then
		HAPROXY_SKIPPED="haproxy is not installed, and there is no apt-get to install it"
		return 0
	fi
	log "installing haproxy (apt-get install haproxy; log in ${ilog#"$ROOT"/})"
	# An old package list may name a version that is gone: update, retry.
	local apt=(apt-get -y -q -o DPkg::Lock::Timeout=120 --no-install-recommends)
	if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install haproxy >"$ilog" 2>&1; then
		if ! { apt-get -q -o DPkg::Lock::Timeout=120 update &&
			DEBIAN_FRONTEND=noninteractive "${apt[@]}" install haproxy; } >>"$ilog" 2>&1; then
			local why
			why=$(grep -E '^E:' "$ilog" | tail -1) || why=$(tail -1 "$ilog")
			HAPROXY_SKIPPED="apt-get install haproxy failed: ${why//$'\r'/}"
			return 0
		fi
	fi
	HAPROXY=$(PATH=$PATH:/usr/sbin:/usr/local/sbin command -v haproxy) ||
		HAPROXY_SKIPPED="apt-get installed haproxy, but there is no haproxy command"
}

# haproxy_h2_backend: whether this haproxy speaks HTTP/2 to servers
# (`alpn h2` on a server line), from its list of multiplexers.
haproxy_h2_backend() {
	local vv
	vv=$("$HAPROXY" -vv 2>/dev/null) || return 1
	grep -qE '^[[:space:]]*h2[[:space:]]*:.*side=[A-Z|]*BE' <<<"$vv"
}

if want_case haproxy; then
	haproxy_setup
	if [[ -n $HAPROXY_SKIPPED ]]; then
		log "haproxy: will be skipped: $HAPROXY_SKIPPED"
	else
		HAPROXY_VERSION=$("$HAPROXY" -v 2>/dev/null | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p' | head -1)
		if [[ -z $HAPROXY_PEER_PROTO ]]; then
			HAPROXY_PEER_PROTO=http/1.1
			haproxy_h2_backend && HAPROXY_PEER_PROTO=h2
		fi
	fi
fi

# The capture case needs what `zmesh up --capture` needs; without it, it
# is reported as skipped and the others still run.
CAPTURE_SKIPPED=
if want_case capture; then
	if ((EUID != 0)); then
		CAPTURE_SKIPPED="zmesh up --capture needs root (network namespaces, nftables)"
	elif ! command -v ip >/dev/null || ! command -v setpriv >/dev/null; then
		CAPTURE_SKIPPED="zmesh up --capture needs ip (iproute2) and setpriv (util-linux)"
	fi
	[[ -z $CAPTURE_SKIPPED ]] || log "capture: will be skipped: $CAPTURE_SKIPPED"
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
		echo "ZMESH=built from the working tree at $(git describe --always --dirty 2>/dev/null || echo 'no commit')${PROXY_ENV:+, proxies started with $PROXY_ENV}"
	else
		echo "ZMESH=$ZMESH_DESC${ZMESH_COMMIT:+ (commit $ZMESH_COMMIT)}"
	fi
	echo "CASES=$CASES"
	if want_case capture; then
		if [[ -n $CAPTURE_SKIPPED ]]; then
			echo "SKIPPED_capture=$CAPTURE_SKIPPED"
		else
			echo "CAPTURE_NETWORK=$CAPTURE_PREFIX $CAPTURE_SUBNET"
		fi
	fi
	if want_case haproxy; then
		if [[ -n $HAPROXY_SKIPPED ]]; then
			echo "SKIPPED_haproxy=$HAPROXY_SKIPPED"
		else
			echo "HAPROXY_VERSION=$HAPROXY_VERSION"
			echo "HAPROXY_THREADS=$HAPROXY_THREADS"
			echo "HAPROXY_PEER_PROTO=$HAPROXY_PEER_PROTO"
		fi
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
# sampler running alongside. fortio runs under LOAD_WRAP (a command that
# execs it, such as `ip netns exec NS`) when that is set.
LOAD_WRAP=()
load() {
	local case=$1 url=$2 fpid spid
	shift 2
	local args=(-qps "$QPS" -c "$CONNECTIONS" -uniform -nocatchup -r 0.0001 -p 50,90,99,99.9
		-H "Host: $SERVER_HOST")
	# One request first, so that a broken path fails here with a reason
	# rather than as a page of errors from the load.
	"${LOAD_WRAP[@]}" "$FORTIO" curl -H "Host: $SERVER_HOST" "$url" >/dev/null 2>"$OUT/$case.check.txt" ||
		die "$case: GET $url (Host: $SERVER_HOST) failed: $(tail -c 300 "$OUT/$case.check.txt")"
	if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
		log "$case: warm-up $WARMUP"
		"${LOAD_WRAP[@]}" "$FORTIO" load "${args[@]}" -t "$WARMUP" "$url" >"$OUT/$case.warmup.txt" 2>&1 ||
			die "$case: warm-up failed, see ${OUT#"$ROOT"/}/$case.warmup.txt"
	fi
	log "$case: $QPS qps, $CONNECTIONS connections, $DURATION -> $url"
	"${LOAD_WRAP[@]}" "$FORTIO" load "${args[@]}" -t "$DURATION" -json "$OUT/$case.json" "$url" >"$OUT/$case.fortio.txt" 2>&1 &
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

# start_echo NAME LOG: starts `zmesh echo` on a free loopback port and
# sets ECHO_PID and ECHO_ADDR.
start_echo() {
	local name=$1 elog=$2
	"$ZMESH" echo --listen 127.0.0.1:0 --name "$name" >"$elog" 2>&1 &
	ECHO_PID=$!
	started+=("$ECHO_PID")
	wait_for_line "$elog" 'echo: serving' "$ECHO_PID" 10 ||
		die "zmesh echo did not start: $(tail -5 "$elog")"
	ECHO_ADDR=$(sed -n 's/.*echo: serving.* addr=\([^ ]*\).*/\1/p' "$elog" | head -1)
	[[ -n $ECHO_ADDR ]] || die "no address in $elog"
}

run_direct() {
	start_echo direct "$OUT/echo.log"
	load direct "http://$ECHO_ADDR/size/$SIZE" "echo=$ECHO_PID"
	stop_pid "$ECHO_PID" 10
}

# start_mesh NAME ARGS...: `zmesh up -f $MESH_DIR ARGS...` with its output
# in $OUT/NAME.out and .log, until `zmesh: ready`; sets UP_PID.
start_mesh() {
	local name=$1
	shift
	log "$name: zmesh up -f $MESH_DIR $*"
	"$ZMESH" up -f "$MESH_DIR" "$@" >"$OUT/$name.out" 2>"$OUT/$name.log" &
	UP_PID=$!
	started+=("$UP_PID")
	wait_for_line "$OUT/$name.out" '^zmesh: ready' "$UP_PID" "$READY_TIMEOUT" ||
		die "zmesh up did not print 'zmesh: ready' in ${READY_TIMEOUT}s:
$(cat "$OUT/$name.out")
$(tail -20 "$OUT/$name.log")"
	mapfile -t mesh_children < <(pgrep -P "$UP_PID")
}

run_mesh() {
	local outbound
	start_mesh up
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

# run_capture: the mesh case captured. fortio is the client pod's app: it
# sends to the server pod's app address with the service's Host, with no
# proxy setting, and its connections are redirected to the client proxy.
run_capture() {
	local line app ns
	start_mesh capture --capture --capture-prefix "$CAPTURE_PREFIX" --capture-subnet "$CAPTURE_SUBNET"
	line=$(grep '^zmesh: workload bench/server ' "$OUT/capture.out") || die "no bench/server line in $OUT/capture.out"
	app=$(sed -n 's/.* app=\([^ ]*\).*/\1/p' <<<"$line")
	ns=$(sed -n 's|^zmesh: workload bench/client .* netns=\([^ ]*\).*|\1|p' "$OUT/capture.out")
	[[ -n $app && -n $ns ]] || die "no app= for bench/server or netns= for bench/client in $OUT/capture.out"
	LOAD_WRAP=(ip netns exec "$ns")
	load capture "http://$app/size/$SIZE" \
		"client proxy=@proxy,--name client,--namespace bench" \
		"server proxy=@proxy,--name server,--namespace bench" \
		"server app=@echo,--name server" \
		"controlplane=@controlplane" \
		"zmesh up=$UP_PID"
	LOAD_WRAP=()
	stop_pid "$UP_PID" 20
}

# ---------------------------------------------------------------- haproxy
# listening PORT: whether a socket listens on TCP port PORT (any address).
listening() {
	local _ addr st
	while read -r _ addr _ st _; do
		[[ $st == 0A ]] && ((16#${addr##*:} == $1)) && return 0
	done < <(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null)
	return 1
}

# free_ports N: N distinct loopback ports that nothing listens on, below
# the kernel's ephemeral range (so no outgoing connection holds them).
free_ports() {
	local -a ports=()
	local p
	while ((${#ports[@]} < $1)); do
		p=$((20000 + RANDOM % 12000))
		[[ " ${ports[*]} " == *" $p "* ]] || listening "$p" || ports+=("$p")
	done
	echo "${ports[@]}"
}

# wait_for_listen PORT PID SECONDS: until PORT listens; fails if PID
# exits first or time runs out.
wait_for_listen() {
	local port=$1 pid=$2 secs=$3 i
	for ((i = 0; i < secs * 10; i++)); do
		listening "$port" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# peer_certs DIR: a throwaway CA and the two peers' ECDSA P-256
# certificates, into DIR: ca.pem; server.pem (for $SERVER_HOST) and
# client.pem (CN $CLIENT_NAME), each the certificate followed by its key,
# as haproxy's crt wants them. Sets PEER_CERTS to the tool that made them.
peer_certs() {
	local d=$1 who cn
	if [[ -z $PEER_CERTS ]]; then
		PEER_CERTS=go
		command -v openssl >/dev/null && PEER_CERTS=openssl
	fi
	if [[ $PEER_CERTS == go ]]; then
		go run ./bench/peers/certs -dir "$d" -server-name "$SERVER_HOST" -client-name "$CLIENT_NAME" ||
			die "haproxy: go run ./bench/peers/certs failed"
		return 0
	fi
	[[ $PEER_CERTS == openssl ]] || die "PEER_CERTS=$PEER_CERTS: want openssl or go"
	cat >"$d/openssl.cnf" <<-EOF
		[req]
		distinguished_name = dn
		prompt = no
		[dn]
		CN = zmesh bench throwaway CA
		[ca]
		basicConstraints = critical, CA:TRUE, pathlen:0
		keyUsage = critical, keyCertSign
		subjectKeyIdentifier = hash
		[server]
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, digitalSignature
		extendedKeyUsage = serverAuth
		subjectAltName = DNS:$SERVER_HOST
		[client]
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, digitalSignature
		extendedKeyUsage = clientAuth
	EOF
	(
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" &&
			openssl req -config "$d/openssl.cnf" -x509 -new -key "$d/ca.key" -sha256 -days 1 \
				-extensions ca -out "$d/ca.pem" &&
			for who in server client; do
				cn=$SERVER_HOST
				[[ $who == client ]] && cn=$CLIENT_NAME
				openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$who.key" &&
					openssl req -config "$d/openssl.cnf" -new -key "$d/$who.key" -subj "/CN=$cn" -out "$d/$who.csr" &&
					openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
						-set_serial "0x$(openssl rand -hex 16)" -days 1 -sha256 \
						-extfile "$d/openssl.cnf" -extensions "$who" -out "$d/$who.crt" &&
					cat "$d/$who.crt" "$d/$who.key" >"$d/$who.pem" || exit 1
			done
	) >"$d/openssl.log" 2>&1 || die "haproxy: openssl could not make the certificates: $(tail -3 "$d/openssl.log")"
	rm -f "$d/ca.key" # nothing else is signed with it
}

# haproxy_config ROLE LISTEN TARGET STATS: writes $OUT/haproxy-ROLE.cfg.
# The client listens on LISTEN for fortio's plaintext HTTP and sends to
# the server at TARGET over mutual TLS; the server listens with TLS on
# LISTEN and sends to the echo app at TARGET. STATS: the client's
# loopback port for its counters, read after the load.
haproxy_config() {
	local role=$1 listen=$2 target=$3 stats=${4:-} alpn= proto="HTTP/1.1 keep-alive"
	if [[ $HAPROXY_PEER_PROTO == h2 ]]; then
		alpn=" alpn h2"
		proto="HTTP/2 (ALPN h2), one stream per request"
	fi
	{
		cat <<-EOF
			# haproxy $role of bench/latency.sh's haproxy case, generated for run $RUN.
			global
			    # Threads: as many as a zmesh proxy's GOMAXPROCS (the CPUs), unless HAPROXY_THREADS.
			    nbthread $HAPROXY_THREADS
			    # Alerts go to stderr anyway; this is for the request log below.
			    log stderr format raw local0

			defaults
			    mode http
			    log global
			    option httplog
			    # Log failed requests only, as zmesh proxies do by default.
			    option dontlog-normal
			    timeout connect 5s
			    timeout client 60s
			    timeout server 60s

		EOF
		if [[ $role == client ]]; then
			cat <<-EOF
				# fortio's requests: plaintext HTTP/1.1 on loopback, as to the mesh's outbound listener.
				frontend outbound
				    bind $listen
				    default_backend server_peer

				backend server_peer
				    # Pooled: any idle connection to the server instance may carry any request.
				    http-reuse always
				    # Mutual TLS 1.3: present client.pem; require the server's certificate to chain
				    # to the run's CA and to name $SERVER_HOST (haproxy checks it against the SNI
				    # name; verifyhost is for connections without one). $proto.
				    server server $target ssl ssl-min-ver TLSv1.3 crt $TMPD/client.pem ca-file $TMPD/ca.pem verify required verifyhost $SERVER_HOST sni str($SERVER_HOST)$alpn

				# Counters (connections opened to and reused with the server instance), read after the load.
				frontend stats
				    bind $stats
				    stats enable
				    stats uri /stats
			EOF
		else
			cat <<-EOF
				# Mutual TLS 1.3: present server.pem; require a client certificate of the run's CA.
				frontend inbound
				    bind $listen ssl ssl-min-ver TLSv1.3 crt $TMPD/server.pem ca-file $TMPD/ca.pem verify required alpn h2,http/1.1
				    # Authorization, as the mesh's ALLOW policy: the client's identity only.
				    http-request deny unless { ssl_c_s_dn(CN) -m str $CLIENT_NAME }
				    default_backend app

				# The echo app: HTTP/1.1 keep-alive, idle connections shared, as the zmesh server proxy's pool.
				backend app
				    http-reuse always
				    server echo $target
			EOF
		fi
	} >"$OUT/haproxy-$role.cfg"
}

# start_haproxy ROLE PORT: checks and starts the ROLE instance in the
# foreground, waits until it listens on PORT and sets HAPROXY_PID.
start_haproxy() {
	local role=$1 port=$2 pid threads
	"$HAPROXY" -c -q -f "$OUT/haproxy-$role.cfg" >"$OUT/haproxy-$role.log" 2>&1 ||
		die "haproxy: ${OUT#"$ROOT"/}/haproxy-$role.cfg is invalid: $(tail -5 "$OUT/haproxy-$role.log")"
	"$HAPROXY" -db -f "$OUT/haproxy-$role.cfg" >"$OUT/haproxy-$role.log" 2>&1 &
	pid=$!
	started+=("$pid")
	wait_for_listen "$port" "$pid" 10 ||
		die "haproxy $role did not listen on $port: $(tail -5 "$OUT/haproxy-$role.log")"
	threads=$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$pid/status")
	[[ $threads == "$HAPROXY_THREADS" ]] || log "haproxy $role: $threads threads, not $HAPROXY_THREADS"
	HAPROXY_PID=$pid
}

# peer_counters PORT: "CONNECT REUSE" of the client instance's server line:
# connections it opened to the server instance and requests that reused
# one, warm-up included.
peer_counters() {
	local fd csv
	exec {fd}<>"/dev/tcp/127.0.0.1/$1"
	printf 'GET /stats;csv;norefresh HTTP/1.0\r\n\r\n' >&"$fd"
	csv=$(timeout 5 cat <&"$fd") || true
	exec {fd}<&-
	awk -F, '/^# pxname/ { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
		$1 == "server_peer" && $2 == "server" && col["connect"] { print $col["connect"], $col["reuse"] }' <<<"$csv"
}

run_haproxy() {
	local listen_s listen_c stats cpid spid counters connect reuse
	TMPD=$(mktemp -d)
	peer_certs "$TMPD"
	start_echo server "$OUT/haproxy-echo.log"
	read -r listen_s listen_c stats <<<"$(free_ports 3)"
	haproxy_config server "127.0.0.1:$listen_s" "$ECHO_ADDR"
	haproxy_config client "127.0.0.1:$listen_c" "127.0.0.1:$listen_s" "127.0.0.1:$stats"
	log "haproxy: $HAPROXY_VERSION, $HAPROXY_THREADS threads each, $HAPROXY_PEER_PROTO between them, certificates by $PEER_CERTS"
	start_haproxy server "$listen_s"
	spid=$HAPROXY_PID
	start_haproxy client "$listen_c"
	cpid=$HAPROXY_PID
	load haproxy "http://127.0.0.1:$listen_c/size/$SIZE" \
		"haproxy client=$cpid" \
		"haproxy server=$spid" \
		"server app=$ECHO_PID"
	counters=$(peer_counters "$stats") || true
	if [[ -n $counters ]]; then
		read -r connect reuse <<<"$counters"
		log "haproxy: $connect connections to the server instance, $reuse requests reused one"
		printf 'HAPROXY_PEER_CONNECTS=%s\nHAPROXY_PEER_REUSES=%s\n' "$connect" "$reuse" >>"$OUT/meta.env"
	else
		log "haproxy: could not read the client instance's counters"
	fi
	echo "HAPROXY_CERTS=$PEER_CERTS" >>"$OUT/meta.env"
	stop_pid "$cpid" 10
	stop_pid "$spid" 10
	stop_pid "$ECHO_PID" 10
}

for c in $CASES; do
	case $c in
	direct) run_direct ;;
	mesh) run_mesh ;;
	capture)
		if [[ -n $CAPTURE_SKIPPED ]]; then
			log "capture: skipped: $CAPTURE_SKIPPED"
		else
			run_capture
		fi
		;;
	haproxy)
		if [[ -n $HAPROXY_SKIPPED ]]; then
			log "haproxy: skipped: $HAPROXY_SKIPPED"
		else
			run_haproxy
		fi
		;;
	esac
done

echo "LOADAVG_AFTER=$(loadavg)" >>"$OUT/meta.env"
go run ./bench/report -dir "$OUT"
go run ./bench/latency/plot "$OUT" >"$OUT/percentiles.svg" || log "no percentile plot"
cp "$OUT/summary.md" "$ROOT/bench/results/latest.md"
log "results in ${OUT#"$ROOT"/}"
