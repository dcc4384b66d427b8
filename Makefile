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

## test: vet + every test (unit, integration, end-to-end, browser, real Traefik, and the compose
## stack where a Docker engine answers: nats-bin is for its local images)
test: deps build traefik-bin nats-bin
	$(GO) vet ./...
	ATENDE_TRAEFIK_BIN=$(TRAEFIK_BIN) $(GO) test -count=1 -timeout 25m ./...

## test-short: the fast packages only
test-short:
	$(GO) test -count=1 -short ./...

## bench: benchmarks and measured figures (see README "Figures"); at full size they take about
## an hour on 2 cores (ATENDE_BENCH_* variables make them smaller, see e2e/chat_bench_test.go)
bench: build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 120m ./...

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
	# atende/mongo: the dedicated tier's database server (FerretDB embedded; compose uses MongoDB).
	$(GO) build -trimpath -o $(BIN)/ ./controlplane/cmd/mongoserver
	tar -c deploy/mongo.Dockerfile $(BIN)/mongoserver $(BIN)/data | \
	  docker build -f deploy/mongo.Dockerfile -t atende/mongo:$(IMAGE_TAG) -

## nats-bin: bin/nats-server for docker-compose.local.yml, built from the Go module proxy
## (github.com/nats-io/nats-server/v2 at $(NATS_VERSION), static, outside our go.mod; a minute or
## two cold, then a no-op until `make clean`)
NATS_VERSION ?= v2.15.2
.PHONY: nats-bin images-local compose-up compose-down
nats-bin: $(BIN)/nats-server
$(BIN)/nats-server:
	mkdir -p $(BIN)
	cd / && export GOWORK=off GOFLAGS=-buildvcs=false && \
	  dir="$$($(GO) mod download -json github.com/nats-io/nats-server/v2@$(NATS_VERSION) | \
	    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$$/\1/p')" && test -d "$$dir" && \
	  cd "$$dir" && $(GO) build -trimpath -ldflags "-s -w" -o $(abspath $(BIN))/nats-server.tmp . && \
	  mv -f $(abspath $(BIN))/nats-server.tmp $(abspath $(BIN))/nats-server

## images-local: `images` plus atende/traefik (make traefik-bin), atende/s3 (versitygw,
## controlplane/cmd/s3server) and atende/nats (make nats-bin), FROM scratch, for
## docker-compose.local.yml on machines without an image registry
images-local: images traefik-bin nats-bin
	$(GO) build -trimpath -o $(BIN)/ ./controlplane/cmd/s3server
	cp $(TRAEFIK_BIN) $(BIN)/traefik
	tar -c deploy/traefik.Dockerfile $(BIN)/traefik $(BIN)/ca-certificates.crt | \
	  docker build -q -f deploy/traefik.Dockerfile -t atende/traefik:$(IMAGE_TAG) -
	tar -c deploy/s3.Dockerfile $(BIN)/s3server $(BIN)/data | \
	  docker build -q -f deploy/s3.Dockerfile -t atende/s3:$(IMAGE_TAG) -
	tar -c deploy/nats.Dockerfile $(BIN)/nats-server | \
	  docker build -q -f deploy/nats.Dockerfile -t atende/nats:$(IMAGE_TAG) -

## compose-up: the compose stack with the locally built images (docker-compose.local.yml); its
## settings come from .env (see deploy/atende.env.example)
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_LOCAL = $(COMPOSE) -f docker-compose.yml -f docker-compose.local.yml
compose-up: images-local
	$(COMPOSE_LOCAL) up -d

## compose-down: stops that stack: the control plane first, then the cell containers it created on
## the stack's network (and their own networks), then the rest; volumes (data) are kept
compose-down:
	$(COMPOSE_LOCAL) stop controlplane
	net=$$(sed -n 's/^ATENDE_NETWORK=//p' .env 2>/dev/null); net=$${ATENDE_NETWORK:-$${net:-atende}}; \
	for c in $$(docker ps -aq --filter label=atende.managed=true --filter network=$$net); do \
	  t=$$(docker inspect -f '{{index .Config.Labels "atende.tenantId"}}' $$c); \
	  docker rm -f $$c >/dev/null && docker network rm atende-t-$$t >/dev/null; done
	$(COMPOSE_LOCAL) down

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
