# Sluice: a static binary in an empty image, running as a non-root user.
#   docker build -t sluice .
#   docker run -p 8080:8080 sluice
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sluice ./cmd/sluice && mkdir /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/sluice /sluice
COPY config.yaml /etc/sluice/config.yaml
# The working directory holds store.memory.path (sluice.db): mount a volume
# there to keep named counters across containers.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
VOLUME /data
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/sluice", "serve", "-config", "/etc/sluice/config.yaml"]
