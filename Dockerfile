# One image, every role: `convsync ingest|process|project|api|migrate|...`.
# The bases are build arguments: the official images by default; deploy/containers/images.sh
# passes images it builds locally (a Debian base with the host's Go, a Debian runtime) where
# no registry is reachable.
ARG GO_IMAGE=golang:1.26
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
ARG GOPROXY=https://proxy.golang.org,direct
WORKDIR /src
COPY go.mod go.sum ./
RUN GOPROXY=${GOPROXY} go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/convsync ./cmd/convsync

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/convsync /usr/local/bin/convsync
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/convsync"]
CMD ["all"]
