# sessionguard: the two commands of the README are `make demo` and `make test`
# (`make demo-supabase` is the demo on the Supabase auth server's schema).
# Everything here runs against throwaway Postgres/Redis servers that the
# tests and the demo start themselves; the machine's own are never used.

GO        ?= go
BIN       ?= bin
# The whole suite takes a few minutes on 2 cores; the timeout only catches hangs.
TEST_TIMEOUT ?= 8m
FUZZTIME  ?= 15s
BENCHTIME ?= 1s
BENCHFLAGS ?=

.PHONY: help demo demo-supabase test check build bench microbench fuzz prereqs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

prereqs: ## check Go, PostgreSQL 15+ and redis-server (installs them when run as root with apt-get); make test also needs nginx, caddy and prometheus
	@scripts/check-prereqs.sh

demo: prereqs ## start Postgres, Redis and both services locally, show a revocation, run until Ctrl-C
	$(GO) run ./cmd/demo

demo-supabase: prereqs ## the demo on the Supabase auth schema: JWTs validated, sign-out and user deletion by SQL refused, run until Ctrl-C
	$(GO) run ./cmd/demo -source supabase

test: ## run every test with the race detector (checks prerequisites, nginx, caddy and prometheus included, first)
	@scripts/check-prereqs.sh --nginx
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	@# tools/ is a module of its own (the Helm chart's tests); helm is built first, outside the test timeout.
	cd tools && $(GO) tool -n helm >/dev/null && $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

check: ## gofmt and go vet
	@out=$$(gofmt -l .); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tools && $(GO) vet ./...

build: ## build validator and invalidator into ./bin
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/validator ./cmd/invalidator

bench: ## the benchmark suite: open-loop load on each scenario and two baselines, report in bench-report/ (BENCHFLAGS=-quick: about a minute)
	@scripts/check-prereqs.sh
	$(GO) run ./cmd/bench $(BENCHFLAGS)

microbench: ## run the Go micro-benchmarks (go test -bench, no tests)
	@scripts/check-prereqs.sh
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) -timeout $(TEST_TIMEOUT) ./...

fuzz: ## run each fuzz target for FUZZTIME (default 15s)
	@scripts/check-prereqs.sh
	@scripts/fuzz.sh $(FUZZTIME)

clean: ## remove build output
	rm -rf $(BIN)
