# ckptimg: see README.md. `make test` is what CI runs.
# Go from PATH, else the standard install's: sudo's secure_path has no Go.
GO ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
export CGO_ENABLED = 0
BIN := bin
PREFIX ?= /usr/local
DESTDIR ?=
FUZZTIME ?= 5m

.PHONY: all build docs install test test-ipcns test-short cross test-arm64 bench fuzz golden lint vet demo clean

all: build

# -buildvcs=auto: the commit goes into --version and into images even where
# GOFLAGS turns VCS stamping off.
build:
	$(GO) build -buildvcs=auto -o $(BIN)/ckptimg ./cmd/ckptimg
	$(GO) build -buildvcs=auto -o $(BIN)/ckpt-restart ./cmd/ckpt-restart

# Man pages and completion scripts, generated from the commands' own help
# by cobra (cmd/internal/cli.GenerateDocs), under $(BIN)/share.
docs:
	$(GO) test -count=1 -run '^TestDocs$$' ./cmd/ckptimg/ ./cmd/ckpt-restart/ -args -docs=$(abspath $(BIN))/share

# make install [PREFIX=/usr/local] [DESTDIR=]: the binaries, man pages and
# completion scripts.
install: build docs
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/ckptimg $(BIN)/ckpt-restart $(DESTDIR)$(PREFIX)/bin/
	cd $(BIN)/share && find . -type f | while read -r f; do \
		install -D -m 0644 "$$f" "$(DESTDIR)$(PREFIX)/share/$$f" || exit 1; \
	done

vet:
	$(GO) vet ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: build lint
	$(GO) test -count=1 -timeout 12m ./...

# The suite again with each test binary in a fresh IPC namespace, where the
# first System V shared memory segment gets id 0 as on a freshly booted
# machine (.ci/run runs it after make test). IPCNS_PKGS narrows it.
IPCNS_PKGS ?= ./...
test-ipcns: build
	$(GO) test -exec 'unshare --ipc --' -count=1 -timeout 12m $(IPCNS_PKGS)

# The fast lane: the packages that need no live process (no root, no gcc),
# and the rule that every test subprocess has a deadline.
OFFLINE_PKGS := ./format/... ./inspect/... ./rewrite/... ./golden/... ./cmd/internal/...
test-short: lint
	$(GO) test -short -count=1 -timeout 5m $(OFFLINE_PKGS)
	$(GO) test -short -count=1 -timeout 1m -run '^TestSubprocessRule' ./internal/testprog/

# The offline commands (ls, info, verify, diff, cat, rewrite, subst, merge)
# need only the format, and build everywhere; capture and ckpt-restart need
# Linux on x86-64 and elsewhere build to commands that say so (exit 5); the
# packages behind them (capture, restorer, internal/ptrace, procfs, dirty,
# snapshot) are built for Linux on x86-64 only. cross builds both binaries
# for each platform and vets what ckptimg is built from there, tests
# included.
CROSS := darwin/amd64 darwin/arm64 linux/arm64
cross:
	@for p in $(CROSS); do \
		echo "cross: $$p"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./cmd/... && \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./cmd/ckptimg/ $(OFFLINE_PKGS) || exit 1; \
	done

# The offline packages' tests built for linux/arm64 and run under
# qemu-user (Debian's qemu-user package, which .ci/run installs). The golden
# tests run the arm64 ckptimg, through the same emulator, on every golden
# image, the arm64 ones included.
test-arm64:
	GOARCH=arm64 CKPTIMG_TEST_EXEC=qemu-aarch64 $(GO) test -exec qemu-aarch64 -count=1 -timeout 20m $(OFFLINE_PKGS)

# Benchmarks print throughput and ratios; see docs/benchmarks.md.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./format/ ./...

# Fuzz each reader target for FUZZTIME (default 5m each). FuzzTables and
# FuzzStructure are structure-aware: they change decoded fields (of the
# tables; of the metadata) and recompute the checksums. FuzzStructure runs
# every reader, the planner and the checks; minimizing its inputs is
# capped, as each run is slow.
fuzz:
	for f in FuzzReader FuzzMetadata FuzzMessage FuzzTables FuzzChain; do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) ./format/ || exit 1; \
	done
	$(GO) test -run '^$$' -fuzz '^FuzzStructure$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./inspect/
	$(GO) test -run '^$$' -fuzz '^FuzzPlan$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./restorer/

# Regenerate the golden images and their expected outputs: those the
# golden package keeps, then those cmd/ckptimg's tests keep (ls --tree,
# grep, diff, and every table at terminal widths 80 and 200).
golden:
	$(GO) test ./golden/ -run TestGolden -update
	$(GO) test ./cmd/ckptimg/ -run 'Golden|AtWidths|^TestDiffCommand$$' -update

# Start a sample program, capture it, list the image, kill it, restart it
# and show it continuing (needs root for exact PIDs).
demo: build
	BIN=$(BIN) GO=$(GO) sh cmd/ckpt-restart/demo.sh

clean:
	rm -rf $(BIN)
