# syntax=docker/dockerfile:1
#
# panopto-sidecar image: a static binary on distroless (CA certificates, no
# shell), running as nonroot 65532. The only writable path it needs is
# /var/lib/panopto-sidecar (token file store, certmagic storage), so the
# container runs with a read-only root filesystem.
#
#   docker build -t panopto-sidecar .
#   docker run --read-only -v panopto-sidecar:/var/lib/panopto-sidecar \
#     -v "$PWD/config.yaml:/etc/panopto-sidecar/config.yaml:ro" panopto-sidecar

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" \
      -o /out/panopto-sidecar ./cmd/panopto-sidecar
# The state directory, created here because the final stage has no shell.
RUN mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/panopto-sidecar /usr/local/bin/panopto-sidecar
# Defaults; Kubernetes mounts its ConfigMap over /etc/panopto-sidecar.
COPY config.yaml /etc/panopto-sidecar/config.yaml
COPY --from=build --chown=65532:65532 --chmod=0700 /out/state /var/lib/panopto-sidecar
# Relative paths in config.yaml (token_store.path: panopto-token.json) land
# in the writable state directory.
WORKDIR /var/lib/panopto-sidecar
VOLUME ["/var/lib/panopto-sidecar"]
USER 65532:65532
EXPOSE 9127
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/panopto-sidecar", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/panopto-sidecar"]
CMD ["serve", "-config", "/etc/panopto-sidecar/config.yaml"]
