# convsync: `make run` to try it, `make test` to check it. Both start the local services
# (PostgreSQL, Redis, Apache Kafka) first, installing what is missing.
SHELL := /bin/bash
GO ?= go
BIN := bin/convsync
# Service URLs written by deploy/local/services.sh; variables already set win. Without the
# file (services.sh could not run here: the tests start containers), nothing is set.
ENV := set -a && { [ ! -f .local/env ] || . .local/env; } && set +a &&
FUZZTIME ?= 10s
TEST_TIMEOUT ?= 20m

.PHONY: all build run test unit lint fuzz bench services-up services-down services-status clean test-containers faults

all: build

build:
	$(GO) build -o $(BIN) ./cmd/convsync

services-up:
	deploy/local/services.sh up

services-down:
	deploy/local/services.sh down

services-status:
	deploy/local/services.sh status

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.local/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags faults ./faults/

# The whole suite against the real services, with the race detector, then a short run of
# every fuzz target (FUZZTIME each; `make fuzz FUZZTIME=5m` for a longer one).
test: services-up lint
	$(ENV) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) fuzz

# The fault matrix (faults/, build tag faults; issue 13): the roles as processes under a
# load of signed webhooks while a process, Postgres, Redis or a Kafka broker is killed,
# restarted or paused, or a transaction pooler sits in front of Postgres; every event
# acknowledged must be in the log and the read model once. One test at a time, no race
# detector (the services it starts are the load); a few minutes.
faults: services-up build
	$(ENV) $(GO) test -tags faults -count=1 -timeout 25m ./faults/

# The containers (deploy/containers/test.sh): installs podman, builds every image locally,
# brings deploy/compose.yaml up with every role and checks it end to end, then runs the
# integration tests with PostgreSQL, Redis and Kafka as testcontainers-go containers.
# Everything it starts is removed at the end; logs stay in .local/containers/logs.
test-containers:
	deploy/containers/test.sh

# Every `func Fuzz` target for FUZZTIME each (FuzzParse, FuzzCodecDecode, FuzzDeltaDecode,
# FuzzGraphResponse, FuzzReadAPIQuery; names must be unique, a target's package is the first
# file defining it), first over its seeds: f.Add and <pkg>/testdata/fuzz/<target>/. Go
# writes a failing input to that folder: commit it with the fix, and it stays a regression
# seed that every `go test` runs. -timeout=0: go test's default 10m would end a 10m run.
fuzz:
	@for target in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r grep -h '^func Fuzz' | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
		pkg=$$(dirname $$(grep -rl --include='*_test.go' "^func $$target(" . | head -1)); \
		echo "fuzz $$target in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$target\$$" -fuzztime=$(FUZZTIME) -timeout=0 $$pkg || exit 1; \
	done

# Every benchmark against the real services. Micro benchmarks (BENCH narrows them) run
# with Go's default time; load benchmarks (BenchmarkLoad*, LOADBENCH narrows them) are
# bounded runs that report their own rates and percentiles, so one iteration each, one
# package at a time (-p 1: two packages' loads on the same cores would measure each other).
# services-up installs what they drive the binary with: wrk and redis-benchmark.
BENCH ?= .
LOADBENCH ?= ^BenchmarkLoad
bench: services-up build
	$(ENV) $(GO) test -run='^$$' -bench='$(BENCH)' -skip='^BenchmarkLoad' -timeout 30m ./...
	$(ENV) $(GO) test -p 1 -run='^$$' -bench='$(LOADBENCH)' -benchtime=1x -timeout 30m ./...

# The first-run demo: migrations, `convsync all`, the Graph API simulator with a small data
# set, a backfill, and a gentle stream of signed webhooks (deploy/local/run.sh). Demo
# secrets unless you set your own; loopback only. Ctrl-C stops all of it.
run: services-up build
	deploy/local/run.sh

clean:
	rm -rf bin
