# The cell image: one static binary, nothing else (no registry here: never pull a base image).
# Build with `make build` first (CGO_ENABLED=0 static binaries), then
#   docker build -f deploy/cell.Dockerfile -t atende/cell:dev .
FROM scratch
COPY bin/cell /cell
USER 65534:65534
ENTRYPOINT ["/cell"]
