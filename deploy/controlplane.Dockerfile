# The control-plane image: static binaries only. It starts cells through the Docker Engine API
# in production (docker driver), or as child processes (process driver, the default).
FROM scratch
COPY bin/controlplane /controlplane
COPY bin/cell /cell
COPY bin/ctl /ctl
ENV ATENDE_DATA_DIR=/data ATENDE_API_ADDR=0.0.0.0:8081 ATENDE_EDGE_ADDR=0.0.0.0:8080 ATENDE_CELL_BIN=/cell
VOLUME /data
ENTRYPOINT ["/controlplane"]
