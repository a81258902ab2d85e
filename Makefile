# Gantry. The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
GANTRY := $(BIN)/gantry
INIT := runtime/initbin/gantry-init
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/gantry-dev/gantry/cluster.Version=$(VERSION) -X github.com/gantry-dev/gantry/cli.Version=$(VERSION)

.PHONY: all deps build init test test-short vet bench demo cluster-demo cluster-clean fuzz clean

all: build

deps:
	@bash scripts/install-deps.sh

# The minimal PID-1 init is built first: the gantry binary embeds it.
init: $(INIT)
$(INIT): $(wildcard cmd/gantry-init/*.go)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o $@ ./cmd/gantry-init

build: init
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="$(LDFLAGS)" -o $(GANTRY) ./cmd/gantry

vet: init
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

# Everything, with real runc, registries, CNI and network namespaces (needs root).
test: build vet
	@bash scripts/install-deps.sh --test
	bash scripts/test.sh

test-short: init
	$(GO) test -short ./...

bench: deps build
	bash scripts/bench.sh

fuzz: init
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./spec

demo: deps build
	bash scripts/demo.sh

# 3 servers and 2 workers in network namespaces; a worker dies and its
# instances move (needs root; KEEP=1 leaves it running).
cluster-demo: deps build
	bash scripts/cluster-demo.sh

clean:
	rm -rf $(BIN) $(INIT)
