# NATS for docker-compose.local.yml (machines without an image registry), in place of the
# official nats:2 image: the nats-server binary built from the Go module proxy (`make nats-bin`:
# github.com/nats-io/nats-server/v2 at $(NATS_VERSION), static, outside our go.mod), nothing else
# (no shell; never pull a base image). `make images-local` streams a minimal context to
# `docker build -`.
FROM scratch
LABEL org.opencontainers.image.title="atende-nats" \
      org.opencontainers.image.description="nats-server built from source for Atende's compose stack"
COPY bin/nats-server /nats-server
EXPOSE 4222 8222
USER 65534:65534
ENTRYPOINT ["/nats-server"]
# Clients on 4222 and the monitoring endpoint (/healthz, /varz) on 8222, as the official image.
CMD ["--port", "4222", "--http_port", "8222"]
