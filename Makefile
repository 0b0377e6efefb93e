# zmesh developer targets. CI (.ci/run) calls `make test`.
GO ?= go
PKGS := ./...

.PHONY: build test test-short bench fuzz-smoke lint demo

# grpcnotrace leaves out grpc's request tracing (golang.org/x/net/trace),
# which imports html/template; template execution calls methods by name
# through reflection, so while it is linked the linker must keep every
# exported method of every type. Without it the binary maps ~4 MB less
# (each zmesh process ~3.5 MiB less RSS). cmd/zmesh's TestReleaseBuildDeps
# keeps it that way; bench/latency.sh and test/e2e build the same way.
BUILD_FLAGS := -tags grpcnotrace -trimpath

# bin/zmesh-proxy is the data-plane build (proxy, echo, capture-init):
# without the control plane's Kubernetes client libraries it is half the
# size, and since a binary's mapped pages count in RSS, each proxy uses
# ~19 MiB less. It is static (no cgo): not mapping libc saves each proxy
# another ~1.2 MiB. `zmesh up` runs its proxies with it when it sits
# beside bin/zmesh.
build:
	$(GO) build $(BUILD_FLAGS) -o bin/zmesh ./cmd/zmesh
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace,zmesh_dataplane -trimpath -o bin/zmesh-proxy ./cmd/zmesh

# The default test run: unit, integration and end-to-end tests, with the
# race detector. Kept under ~10 minutes on 2 cores.
# test/e2e and test/reliability always run (-count=1): they build and run
# the zmesh binary, an input the test cache does not see. test/reliability
# is the reliability suite's short form (~3 min; docs/reliability.md).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout 15m $$($(GO) list $(PKGS) | grep -v '/test/e2e\|/test/reliability')
	$(GO) test -race -count=1 -timeout 15m ./test/e2e
	$(GO) test -count=1 -timeout 10m ./test/reliability

test-short:
	$(GO) test -short $(PKGS)

# Go benchmarks for the hot paths; bench/latency.sh for end-to-end load.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# Each fuzz target for a few seconds. A target that fails with a bare
# "context deadline exceeded" and writes no failing input has hit a race in
# Go's fuzzing coordinator at the end of -fuzztime (Go issue 75804, fixed in
# Go 1.27, not in 1.26.x): it is run once more, and fails only if that
# happens again. A real finding always writes its input first.
fuzz-smoke:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t"; \
	    for try in 1 2; do \
	      out=$$($(GO) test -run "^$$" -fuzz "^$$t$$" -fuzztime 5s -fuzzminimizetime 0 $$pkg 2>&1); rc=$$?; \
	      if [ $$rc -eq 0 ]; then echo "$$out" | tail -1; break; fi; \
	      if [ $$try -eq 1 ] && echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
	        echo "fuzz $$t: deadline race in Go's fuzz coordinator, no input written; running it again"; continue; \
	      fi; \
	      echo "$$out"; exit 1; \
	    done; \
	  done; \
	done

# staticcheck is fetched by the go command at the version below (see
# staticcheck.conf for the checks).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

demo:
	$(GO) run ./cmd/zmesh up
