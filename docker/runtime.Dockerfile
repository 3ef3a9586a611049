# syntax=docker/dockerfile:1
# The BotFleet bot runtime (the operator runs it as `bot-runtime serve --config …`).
# Build from the repository root (the .dockerignore keeps target/ and .git out of the context):
#   DOCKER_BUILDKIT=1 docker build -f docker/runtime.Dockerfile -t <registry>/botfleet/bot-runtime:<tag> .
# The binary is built by scripts/build-release.sh, as CI builds it. The final image is
# distroless cc (glibc and libgcc, no shell) and runs as the nonroot user 65532 that the
# chart's and the operator's securityContexts expect. The builder is bookworm on purpose: a
# binary linked against a newer Debian's glibc may not start on distroless/cc-debian12.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The caches only speed up rebuilds; the binary is copied out of the cached target dir.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    scripts/build-release.sh runtime /out

FROM ${RUNTIME_BASE_IMAGE}
COPY --from=build /out/bot-runtime /bot-runtime
USER 65532:65532
ENTRYPOINT ["/bot-runtime"]
