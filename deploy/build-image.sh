#!/usr/bin/env bash
# Builds the statically linked binaries and the FROM scratch image. Nothing
# is pulled from any registry.
#
#   deploy/build-image.sh [--dev] [IMAGE]
#
# Without --dev the image holds what an operator runs (allegro); with it,
# also the development tools (allegro-dev), which a test network's dev chain
# container needs. Default IMAGE: allegro:latest, or allegro-e2e-allegro:dev
# with --dev.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
if [ "${1:-}" = "--dev" ]; then
	dev=1
	shift
fi
image="${1:-}"
if [ -z "$image" ]; then
	if [ "$dev" = 1 ]; then image="allegro-e2e-allegro:dev"; else image="allegro:latest"; fi
fi
version="$(git describe --always --dirty 2>/dev/null || echo dev)"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin"
echo "== building the static binaries (CGO_ENABLED=0)"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/allegro-mesh/allegro/internal/buildinfo.Version=$version" -o "$context/bin/allegro" ./cmd/allegro
if [ "$dev" = 1 ]; then
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/allegro-mesh/allegro/internal/buildinfo.Version=$version" -o "$context/bin/allegro-dev" ./cmd/allegro-dev
fi
cp deploy/Dockerfile "$context/Dockerfile"
echo "== docker build -t $image (FROM scratch)"
docker build --pull=false -t "$image" "$context"
