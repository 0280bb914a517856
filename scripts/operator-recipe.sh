#!/usr/bin/env bash
# Runs README.md's "Running a validator" recipe exactly as written (the
# shell block between the operator-recipe markers), then checks what a reader
# would see: the payment's QC printed, every sidecar ready, and no sidecar
# exited. Bounded by RECIPE_TIMEOUT (default 10m); every process it started
# is stopped on exit, and bin/ and localnet/ are removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/doc-block.sh

run_doc_block README.md operator-recipe localnet "${RECIPE_TIMEOUT:-10m}" "
echo '== recipe: checking the sidecars'
for i in 0 1 2 3; do
	allegro healthcheck --quiet --url http://127.0.0.1:707\$i/readyz
done
if [ \"\$(jobs -rp | wc -l)\" -ne 5 ]; then
	echo 'operator-recipe: a background process of the recipe exited' >&2
	jobs -l >&2
	tail -n 20 ./*.log >&2
	exit 1
fi"
if ! grep -q '^QC 0x' "$doc_block_out"; then
	echo "operator-recipe: the payment printed no QC" >&2
	exit 1
fi
echo "== operator recipe: 4 sidecars ready, payment certified"
