# lvsctl: see README.md. `make test` is what CI runs; `make demo` shows the main job in the lab.
SHELL := /bin/bash
GO ?= go
TOOL := $(GO) tool -modfile=tools/go.mod
BIN := bin
CMDS := ./controlplane/cmd/lvs-controller ./agent/cmd/lvs-agent ./cli/cmd/lvsctl
# Tests that need root and a kernel feature (network namespaces, nftables) fail instead of
# skipping under `make test`: a skipped test must never pass for a green run.
export LVSCTL_REQUIRE_PRIVILEGED ?= 1

.PHONY: all build generate check-generated lint unit test lab demo bench bench-ha clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ $(CMDS)

generate:
	$(TOOL) buf generate

# Regenerates into a scratch folder and compares, so stale generated code fails the build
# without touching the work tree.
check-generated:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(TOOL) buf generate -o $$tmp && \
	diff -r -x '*.proto' $$tmp/proto proto >/dev/null || { echo "generated code in proto/ is stale: run 'make generate'"; exit 1; }
	@echo "generated code is up to date"

lint:
	$(TOOL) buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(TOOL) staticcheck ./...

unit:
	$(GO) test -count=1 ./...

test: check-generated lint build unit lab

lab:
	deploy/lab/run.sh

demo:
	deploy/lab/run.sh --demo

# Benchmarks measure (they never fail on a slow figure) and write docs/benchmarks.md.
bench:
	tools/bench.sh

# Takeover time against keepalived's VRRPv3 (advert_int 0.1), in one lab boot: LAB-BENCH lines.
bench-ha:
	deploy/lab/run.sh bench-ha

clean:
	rm -rf $(BIN) deploy/lab/.build
