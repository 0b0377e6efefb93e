#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target in the repository (each `func Fuzz*`
# in a _test.go file, found with `go test -list`, so build tags count) for
# a while, one after another, and fails on the first crash. It is the
# scheduled fuzzing run (30 s each, ~20 minutes for the ~40 targets); its
# short form is `make fuzz-smoke` (5 s each) or `bench/fuzz.sh -d 1s`.
#
#   bench/fuzz.sh [-d 30s] [-p PATTERN] [--no-save] [--max-new 20]
#
#   -d DURATION   fuzz time per target (go test -fuzztime)
#   -p PATTERN    only targets whose "pkgdir FuzzName" matches this
#                 extended regexp (e.g. -p 'authz|FuzzParseJWT')
#   --no-save     do not copy new corpus entries into testdata/fuzz
#   --max-new N   copy at most N new entries per target (the newest)
#
# A crash: go test writes the failing input to the package's
# testdata/fuzz/FuzzName/ (commit it with the fix: it becomes a
# regression test of the plain `go test` run), and this script exits 1
# after printing the output. New interesting inputs the fuzzer found stay
# in Go's cache ($GOCACHE/fuzz) unless copied: by default the newest
# --max-new of each target's are copied into testdata/fuzz/FuzzName/ so
# that they are replayed by every `go test` and survive a cache wipe;
# review and commit them. A target that fails with a bare "context
# deadline exceeded" and writes no input has hit a race in Go's fuzzing
# coordinator at the end of -fuzztime (Go issue 75804, fixed in Go 1.27):
# it is run once more, and fails only if that happens again (as
# `make fuzz-smoke` does).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=30s
PATTERN=
SAVE=1
MAX_NEW=20
while (($#)); do
	case $1 in
	-d) DURATION=$2; shift 2 ;;
	-p) PATTERN=$2; shift 2 ;;
	--no-save) SAVE=0; shift ;;
	--max-new) MAX_NEW=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

GOCACHE=$(go env GOCACHE)
MODULE=$(go list -m)
log() { printf 'fuzz.sh: %s\n' "$*" >&2; }

# The packages that hold a fuzz target, found by their source.
dirs=$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
start=$SECONDS
n=0 saved=0
for dir in $dirs; do
	pkg=$MODULE/${dir#./}
	for target in $(go test -list '^Fuzz' "$dir" 2>/dev/null | grep '^Fuzz' || true); do
		if [[ -n $PATTERN ]] && ! [[ "$dir $target" =~ $PATTERN ]]; then
			continue
		fi
		n=$((n + 1))
		t0=$SECONDS
		for try in 1 2; do
			rc=0
			out=$(go test -run '^$' -fuzz "^$target\$" -fuzztime "$DURATION" "$dir" 2>&1) || rc=$?
			if ((rc == 0)); then
				break
			fi
			if ((try == 1)) && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
				log "$dir $target: deadline race in Go's fuzz coordinator, no input written; running it again"
				continue
			fi
			printf '%s\n' "$out" >&2
			log "CRASH in $dir $target; the failing input is under $dir/testdata/fuzz/$target/"
			exit 1
		done
		summary=$(grep -o 'elapsed: .*' <<<"$out" | tail -1 || true)
		if ((SAVE)) && [[ -d $GOCACHE/fuzz/$pkg/$target ]]; then
			mkdir -p "$dir/testdata/fuzz/$target"
			# Newest first; an entry already in testdata (same name: a hash
			# of its content) is skipped.
			copied=0
			while IFS= read -r f; do
				((copied < MAX_NEW)) || break
				[[ -e $dir/testdata/fuzz/$target/$(basename "$f") ]] && continue
				cp "$f" "$dir/testdata/fuzz/$target/"
				copied=$((copied + 1))
			done < <(ls -t "$GOCACHE/fuzz/$pkg/$target"/* 2>/dev/null)
			rmdir "$dir/testdata/fuzz/$target" 2>/dev/null || true
			saved=$((saved + copied))
		fi
		log "ok $dir $target ($((SECONDS - t0)) s) ${summary:-}"
	done
done
log "$n targets, no crash, $((SECONDS - start)) s; $saved new corpus entries copied into testdata/fuzz"
