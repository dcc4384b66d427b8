# Atende — build, run and test. `make run` starts the local stack; `make test` runs every test
# against real embedded dependencies (FerretDB, versitygw, headless Chromium).
GO      ?= go
BIN     := bin
export CGO_ENABLED := 0
# The real Traefik the routing test runs (traefik/real_test.go): built from the Go module proxy by
# traefik/build-traefik.sh into a cache outside the repository, once per machine.
TRAEFIK_VERSION ?= v3.6.12
TRAEFIK_BIN     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/atende/traefik-$(TRAEFIK_VERSION)

.PHONY: all build run test test-short bench deps traefik-bin fmt vet images clean

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

## traefik-bin: build the real Traefik for the routing test (about 10 min cold; no-op once cached)
traefik-bin:
	@TRAEFIK_VERSION=$(TRAEFIK_VERSION) ATENDE_TRAEFIK_BIN=$(TRAEFIK_BIN) GO=$(GO) traefik/build-traefik.sh >/dev/null

## test: vet + every test (unit, integration, end-to-end, browser, real Traefik)
test: deps build traefik-bin
	$(GO) vet ./...
	ATENDE_TRAEFIK_BIN=$(TRAEFIK_BIN) $(GO) test -count=1 -timeout 25m ./...

## test-short: the fast packages only
test-short:
	$(GO) test -count=1 -short ./...

## bench: benchmarks and measured figures (see README "Figures")
bench: build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

## images: atende/cell:$(IMAGE_TAG) and atende/controlplane:$(IMAGE_TAG), FROM scratch, from the
## static binaries (nothing is pulled: there is no registry). Each context is a tar of exactly the
## files its Dockerfile copies, streamed to `docker build -`; the CA bundle and the time-zone zip
## (of the Go toolchain) come from this host.
IMAGE_TAG ?= dev
CA_CERTS  ?= /etc/ssl/certs/ca-certificates.crt
images: build
	cp $(CA_CERTS) $(BIN)/ca-certificates.crt
	cp "$$($(GO) env GOROOT)/lib/time/zoneinfo.zip" $(BIN)/zoneinfo.zip
	mkdir -p $(BIN)/data
	tar -c deploy/cell.Dockerfile $(BIN)/cell $(BIN)/ca-certificates.crt $(BIN)/zoneinfo.zip | \
	  docker build -f deploy/cell.Dockerfile -t atende/cell:$(IMAGE_TAG) -
	tar -c deploy/controlplane.Dockerfile $(BIN)/controlplane $(BIN)/cell $(BIN)/ctl $(BIN)/ca-certificates.crt \
	  $(BIN)/zoneinfo.zip $(BIN)/data | docker build -f deploy/controlplane.Dockerfile -t atende/controlplane:$(IMAGE_TAG) -

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
