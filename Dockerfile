# syntax=docker/dockerfile:1
# One image with both binaries: `validator` (default), `validator migrate`
# and `invalidator`. Static Go binaries on Alpine: small, and its busybox
# wget serves the compose healthchecks.

FROM golang:1.26 AS build
# go.mod names a 1.26 patch release; should the image's be older, let the go
# command fetch the right toolchain instead of failing (the image sets local).
ENV GOTOOLCHAIN=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/validator ./cmd/invalidator

FROM alpine:3.22
# ca-certificates for rediss:// and sslmode=verify-full; tzdata is not
# needed (all times are UTC or absolute).
RUN apk add --no-cache ca-certificates \
 && adduser -D -H -u 10001 -s /sbin/nologin sessionguard
COPY --from=build /out/validator /out/invalidator /usr/local/bin/
USER 10001:10001
EXPOSE 8080 8081
CMD ["validator"]
