#!/usr/bin/env bash
# The project's test command (README.md). Runs static checks, the whole test
# suite under the race detector, and a short run of every fuzz target.
#
#   FUZZTIME=8s   how long each fuzz target runs (0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-8s}"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -timeout 20m ./...

echo "== benchmarks (one iteration each: they must run; timings are not checked)"
go test -run '^$' -bench . -benchtime 1x ./...

if [ "$fuzztime" != "0" ]; then
	echo "== fuzz smoke ($fuzztime each)"
	# package:target pairs; see docs/fuzzing.md to run them longer.
	for pt in \
		./tempo:FuzzDecodeTempoTx \
		./tempo:FuzzDecodeEVMTx \
		./validator:FuzzSubmitRequest; do
		pkg=${pt%%:*} target=${pt##*:}
		echo "-- $target"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	done
fi
echo "== all tests passed"
