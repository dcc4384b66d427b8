# Traefik for docker-compose.local.yml (machines without an image registry), in place of the
# official traefik:v3.6 image: the real Traefik v3.6.12 binary built from the Go module proxy
# (`make traefik-bin`, cached outside the repository) plus the CA bundle, nothing else (no shell;
# never pull a base image). `make images-local` copies the binary to bin/traefik and streams a
# minimal context to `docker build -`. Configuration is the same as with the official image:
# docker-compose.yml mounts traefik/traefik.yml and the control plane's routes.
FROM scratch
LABEL org.opencontainers.image.title="atende-traefik" \
      org.opencontainers.image.description="Traefik v3 built from source for Atende's compose stack"
# For ACME (Let's Encrypt) and any HTTPS backend.
COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# On PATH as in the official image, so `traefik healthcheck --ping` works the same in both.
COPY bin/traefik /usr/local/bin/traefik
ENV PATH=/usr/local/bin
EXPOSE 80 8080
# "nobody": Docker lets unprivileged processes bind ports below 1024 inside a container's own
# network namespace (net.ipv4.ip_unprivileged_port_start=0 since Engine 20.10).
USER 65534:65534
ENTRYPOINT ["traefik"]
CMD ["--configfile=/etc/traefik/traefik.yml"]
