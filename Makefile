# ckptimg: see README.md. `make test` is what CI runs.
GO ?= go
export CGO_ENABLED = 0
BIN := bin
FUZZTIME ?= 5m

.PHONY: all build test test-short bench fuzz golden lint vet demo clean

all: build

build:
	$(GO) build -o $(BIN)/ckptimg ./cmd/ckptimg
	$(GO) build -o $(BIN)/ckpt-restart ./cmd/ckpt-restart

vet:
	$(GO) vet ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: build lint
	$(GO) test -count=1 -timeout 12m ./...

test-short:
	$(GO) test -short ./...

# Benchmarks print throughput and ratios; see docs/benchmarks.md.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./format/ ./...

# Fuzz each reader target for FUZZTIME (default 5m each). FuzzTables and
# FuzzStructure are structure-aware: they change decoded fields (of the
# tables; of the metadata) and recompute the checksums. FuzzStructure runs
# every reader, the planner and the checks; minimizing its inputs is
# capped, as each run is slow.
fuzz:
	for f in FuzzReader FuzzMetadata FuzzMessage FuzzTables; do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) ./format/ || exit 1; \
	done
	$(GO) test -run '^$$' -fuzz '^FuzzStructure$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./inspect/

# Regenerate the golden images and their expected outputs.
golden:
	$(GO) test ./golden/ -run TestGolden -update

# Start a sample program, capture it, list the image, kill it, restart it
# and show it continuing (needs root for exact PIDs).
demo: build
	BIN=$(BIN) GO=$(GO) sh cmd/ckpt-restart/demo.sh

clean:
	rm -rf $(BIN)
