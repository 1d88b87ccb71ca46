# Sluice: a static binary in an empty image, running as a non-root user.
#   docker build -t sluice:0.1.0 --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run -p 8080:8080 sluice:0.1.0
# This file is the one place that sets the container's command: ENTRYPOINT
# is the binary, CMD its default arguments. Manifests set neither, so
# `docker run sluice:0.1.0 version` and `... validate -config FILE` work too.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X github.com/sluice-gateway/sluice/internal/version.version=${VERSION} -X github.com/sluice-gateway/sluice/internal/version.revision=${REVISION}" \
      -o /out/sluice ./cmd/sluice \
 && mkdir -p /out/tmp /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/sluice /sluice
COPY config.yaml /etc/sluice/config.yaml
# /tmp holds a generated admin token's file. The working directory /data
# holds store.memory.path (sluice.db): mount a volume there to keep named
# counters across containers.
COPY --from=build --chown=65532:65532 /out/tmp /tmp
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
VOLUME /data
USER 65532:65532
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s CMD ["/sluice", "healthcheck", "-config", "/etc/sluice/config.yaml"]
ENTRYPOINT ["/sluice"]
CMD ["serve", "-config", "/etc/sluice/config.yaml"]
