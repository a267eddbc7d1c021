# syntax=docker/dockerfile:1
# edgerec in a container: a static binary (CGO_ENABLED=0) on
# distroless/static, run as the image's nonroot user. README, "Deploy":
#
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t edgerec .
#   docker run -d --name edgerec -p 8080:8080 -v edgerec:/var/lib/edgerec \
#     --env-file edgerec.env --stop-timeout 15 edgerec
#   docker exec -i edgerec edgerec snapshot unpack --root /var/lib/edgerec/snapshots - < snap.tar.zst
#   curl -X POST -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/v1/admin/snapshots
#
# TestDockerfile (cmd/edgerec) checks this file against the code: the Go
# version of go.mod, the serve flags and environment, the health check
# run against a real server.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/edgerec ./cmd/edgerec && \
    mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/edgerec /usr/local/bin/edgerec
COPY edgerec.yaml /etc/edgerec/edgerec.yaml
# The data directory (snapshots/ and state/), owned by nonroot so that a
# fresh named volume mounted on it is writable.
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/edgerec
# serve's settings, as the environment twins of its flags, to override
# with docker run -e. The keys (EDGEREC_API_KEY, EDGEREC_ADMIN_KEY) come
# from --env-file, never from the image. EDGEREC_DRAIN stays below
# docker stop's default 10 s; with --stop-timeout N, raise it to N-5s.
ENV EDGEREC_ADDR=0.0.0.0:8080 \
    EDGEREC_DATA=/var/lib/edgerec \
    EDGEREC_CONFIG=/etc/edgerec/edgerec.yaml \
    EDGEREC_DRAIN=8s
USER nonroot:nonroot
VOLUME /var/lib/edgerec
EXPOSE 8080
# No shell or curl in the image: edgerec health GETs /readyz on the port
# of EDGEREC_ADDR and exits 0 on 200 (a snapshot is loaded), 1 otherwise.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/edgerec", "health", "--path", "/readyz"]
ENTRYPOINT ["/usr/local/bin/edgerec"]
CMD ["serve"]
