# syntax=docker/dockerfile:1
#
# leadlink's image: one binary for every role (serve, ingest, worker, sim and the operator's
# commands). Build: docker build -t leadlink .
# The configuration and its secrets are mounted at run time (docker-compose.yml,
# deploy/kubernetes/); nothing secret is built into the image.

ARG RUST_VERSION=1.89

# The build stage: the toolchain and the sources, none of which reach the runtime image.
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep crates and compiled dependencies between builds; the binary is copied
# out of the cached target/ because a cache mount is not part of the stage's filesystem.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin leadlink \
    && cp target/release/leadlink /leadlink

# The runtime stage: glibc, libgcc and CA certificates (for amqps:// and https://), no shell,
# no package manager. Its Debian release matches the build stage's, so glibc does too.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /leadlink /usr/local/bin/leadlink
# Numeric, so Kubernetes' runAsNonRoot can verify it (a user name cannot be checked).
USER 65532:65532
# 8080: server.listen (webhooks, admin API, /healthz, /readyz, /metrics);
# 8081: worker.health_listen in deploy/leadlink.toml.
EXPOSE 8080 8081
# The binary is its own health check (the image has no curl): /healthz on 127.0.0.1:8080,
# the ingest side. A worker's container checks its health_listen port with --url instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/leadlink", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/leadlink"]
CMD ["serve", "--config", "/etc/leadlink/leadlink.toml"]
