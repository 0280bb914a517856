#!/usr/bin/env bash
# Builds the statically linked allegro binary and the FROM scratch image.
# Nothing is pulled from any registry.
#
#   deploy/build-image.sh [IMAGE]      default IMAGE: allegro-e2e-allegro:dev
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-allegro-e2e-allegro:dev}"
version="$(git describe --always --dirty 2>/dev/null || echo dev)"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
echo "== building the static binary (CGO_ENABLED=0)"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$context/allegro" ./cmd/allegro
cp deploy/Dockerfile "$context/Dockerfile"
echo "== docker build -t $image (FROM scratch)"
docker build --pull=false -t "$image" "$context"
