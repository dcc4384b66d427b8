# Atende — build, run and test. `make run` starts the local stack; `make test` runs every test
# against real embedded dependencies (FerretDB, versitygw, headless Chromium).
GO      ?= go
BIN     := bin
export CGO_ENABLED := 0

.PHONY: all build run test test-short bench deps fmt vet images clean

all: build

## build: static binaries bin/controlplane, bin/cell, bin/ctl
build:
	$(GO) build -trimpath -o $(BIN)/ ./controlplane/cmd/controlplane ./cell/cmd/cell ./ctl

## run: the whole local stack in the foreground (Ctrl-C stops it); data under ATENDE_DATA_DIR
run: build
	./$(BIN)/controlplane

## deps: what the tests need beyond Go: Debian's chromium for the browser smoke test
deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## test: vet + every test (unit, integration, end-to-end, browser)
test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

## test-short: the fast packages only
test-short:
	$(GO) test -count=1 -short ./...

## bench: benchmarks and measured figures (see README "Figures")
bench: build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
