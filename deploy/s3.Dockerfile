# The S3-compatible server of docker-compose.local.yml (machines without an image registry), in
# place of minio/minio: one static binary, bin/s3server (controlplane/cmd/s3server: versitygw
# embedded, posix backend, objects in /data), nothing else (no shell; never pull a base image).
# `make images-local` builds it from a minimal context streamed to `docker build -`.
FROM scratch
LABEL org.opencontainers.image.title="atende-s3" \
      org.opencontainers.image.description="Atende's S3-compatible server (versitygw, posix backend)"
COPY bin/s3server /s3server
# An empty directory owned by the runtime user: a named volume mounted on /data starts with this
# ownership, so the non-root server can write its objects there.
COPY --chown=65534:65534 bin/data /data
ENV ATENDE_S3_ADDR=0.0.0.0:9000 ATENDE_DATA_DIR=/data
VOLUME /data
EXPOSE 9000
USER 65534:65534
# No shell or curl in a scratch image: the binary requests its own /healthz.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/s3server", "-healthcheck"]
ENTRYPOINT ["/s3server"]
