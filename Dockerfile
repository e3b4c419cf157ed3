# One image, every role: `convsync ingest|process|project|api|migrate|...`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/convsync ./cmd/convsync

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/convsync /usr/local/bin/convsync
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/convsync"]
CMD ["all"]
