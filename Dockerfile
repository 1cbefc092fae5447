# The example deployment: ferry as the entrypoint, and the example
# multi-tenant app (examples/counter) that ferry starts through `exec` in
# ferry.yml (APP_COMMAND). Replace the counter with your own app.
#
# scripts/test.d/40-example.sh runs this file's `go build` steps and
# starts the app on the built binaries, so they are tested without docker.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -o /out/ferry ./cmd/ferry
RUN go build -o /out/counter ./examples/counter

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends fuse3 sqlite3 ca-certificates \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ferry /usr/local/bin/ferry
COPY --from=build /out/counter /app/counter
COPY docs/examples/fly-ferry.yml /etc/ferry.yml
ENTRYPOINT ["ferry", "mount", "-config", "/etc/ferry.yml"]
