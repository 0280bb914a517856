#!/usr/bin/env bash
# The project's test command (README.md). Runs static checks, the whole test
# suite under the race detector, README's operator recipe, every benchmark
# once, and a short run of every fuzz target.
#
#   FUZZTIME=N    fuzz budget for every target (a duration like 8s, or an
#                 execution count like 100000x; 0 skips fuzzing). Default: a
#                 per-target execution count of a few seconds' work. Counts,
#                 not durations: with a duration Go 1.26's fuzz coordinator can
#                 fail a healthy target with "context deadline exceeded" at the
#                 deadline on a loaded machine (golang/go#75804, fixed in 1.27).
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-}"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -timeout 20m ./...

echo "== operator recipe (README.md, Running a validator)"
./scripts/operator-recipe.sh

echo "== epoch walk-through (docs/epochs.md: a fifth operator joins from the chain)"
./scripts/epoch-walkthrough.sh

echo "== benchmarks (one iteration each: they must run; timings are not checked)"
go test -run '^$' -bench . -benchtime 1x ./...

if [ "$fuzztime" != "0" ]; then
	echo "== fuzz smoke (${fuzztime:-default budgets})"
	# package:target:executions; see docs/fuzzing.md to run them longer.
	for pt in \
		./tempo:FuzzDecodeTempoTx:200000x \
		./tempo:FuzzDecodeEVMTx:200000x \
		./validator:FuzzSubmitRequest:50000x \
		./qc:FuzzBatchAgreesWithSingle:50000x \
		./p2p:FuzzDecodeFrames:50000x \
		./p2p:FuzzDecodeFramesMatchProtobuf:50000x \
		./p2p:FuzzCertStream:20000x \
		./epoch:FuzzCloseBundle:30000x; do
		IFS=: read -r pkg target budget <<<"$pt"
		budget="${fuzztime:-$budget}"
		echo "-- $target ($budget)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" "$pkg"
	done
fi
echo "== all tests passed"
