# The control-plane image: static binaries, the CA bundle and the time-zone database only (no
# registry here: never pull a base image). `make images` builds it from a minimal context streamed
# to `docker build -`; docker-compose.yml builds it with the repository as context, which works
# once `make images` has staged bin/ (binaries, bin/ca-certificates.crt, bin/zoneinfo.zip,
# bin/data).
# It runs cells as child processes (process driver, the default) or, with ATENDE_DRIVER=docker,
# as containers through the Docker Engine API: mount /var/run/docker.sock and add the socket's
# group (compose: group_add: ["<gid of docker.sock>"]), since the process runs as 65534.
FROM scratch
LABEL org.opencontainers.image.title="atende-controlplane" \
      org.opencontainers.image.description="Atende control plane: tenant registry, supervisor, API"
COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY bin/zoneinfo.zip /zoneinfo.zip
COPY bin/controlplane /controlplane
COPY bin/cell /cell
COPY bin/ctl /ctl
# An empty directory owned by the runtime user: a named volume mounted on /data starts with this
# ownership, so the non-root control plane can write its data there.
COPY --chown=65534:65534 bin/data /data
# The same empty directory again as /data/traefik, where the control plane writes Traefik's
# dynamic configuration: docker-compose.yml mounts the volume Traefik reads on it, and a named
# volume takes the ownership of the directory it is first mounted on.
COPY --chown=65534:65534 bin/data /data/traefik
ENV ZONEINFO=/zoneinfo.zip ATENDE_DATA_DIR=/data ATENDE_API_ADDR=0.0.0.0:8081 ATENDE_EDGE_ADDR=0.0.0.0:8080 ATENDE_CELL_BIN=/cell
VOLUME /data
USER 65534:65534
EXPOSE 8080 8081
ENTRYPOINT ["/controlplane"]
