# The MongoDB-protocol server image of a dedicated tenant (atende/mongo): one static binary,
# bin/mongoserver (controlplane/cmd/mongoserver: FerretDB v1 embedded, SQLite files in /data),
# nothing else (no shell; no registry here: never pull a base image). `make images` builds it from
# a minimal context streamed to `docker build -`. The docker driver runs one container of it per
# dedicated tenant, on the tenant's own network, with a volume on /data. docker-compose.yml uses
# MongoDB itself instead.
FROM scratch
LABEL org.opencontainers.image.title="atende-mongo" \
      org.opencontainers.image.description="Atende dedicated database server: MongoDB wire protocol (FerretDB v1, SQLite)"
COPY bin/mongoserver /mongoserver
# An empty directory owned by the runtime user: a named volume mounted on /data starts with this
# ownership, so the non-root server can write its SQLite files there.
COPY --chown=65534:65534 bin/data /data
ENV ATENDE_MONGO_ADDR=0.0.0.0:27017 ATENDE_DATA_DIR=/data
VOLUME /data
EXPOSE 27017
USER 65534:65534
# No shell in a scratch image: the binary pings its own listener.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/mongoserver", "-healthcheck"]
ENTRYPOINT ["/mongoserver"]
