# The cell image: one static binary, the CA bundle and the time-zone database, nothing else (no
# shell, no package manager; no registry here: never pull a base image). `make images` builds it
# from a minimal context it streams to `docker build -` (no .dockerignore needed):
#   make images   # = make build, then bin/ca-certificates.crt and bin/zoneinfo.zip from the host
# The docker cell driver (controlplane/docker) sets the configuration as ATENDE_CELL_* variables,
# listens on 0.0.0.0:8080 inside the container and overrides the health-check timings.
FROM scratch
LABEL org.opencontainers.image.title="atende-cell" \
      org.opencontainers.image.description="Atende chat cell: serves one tenant"
# Cells talk TLS to managed MongoDB (mongodb+srv) and S3 (AWS) in production: Go reads this file.
COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Tenants set IANA time zones (business hours); a scratch image has no /usr/share/zoneinfo, Go
# reads the zip of its own toolchain through ZONEINFO.
COPY bin/zoneinfo.zip /zoneinfo.zip
COPY bin/cell /cell
ENV ZONEINFO=/zoneinfo.zip ATENDE_CELL_ADDR=0.0.0.0:8080
EXPOSE 8080
# 65534 is "nobody": no file in the image belongs to it and the root file system is mounted
# read-only by the driver.
USER 65534:65534
# No shell or curl in a scratch image: the cell binary probes its own /healthz.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/cell", "-healthcheck"]
ENTRYPOINT ["/cell"]
