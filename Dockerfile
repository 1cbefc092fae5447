# An image with ferry as the entrypoint; the app is started by `exec` in
# ferry.yml (APP_COMMAND). Replace the final stage's app with your own.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -o /out/ferry ./cmd/ferry

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends fuse3 sqlite3 ca-certificates \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ferry /usr/local/bin/ferry
COPY docs/examples/fly-ferry.yml /etc/ferry.yml
ENTRYPOINT ["ferry", "mount", "-config", "/etc/ferry.yml"]
