#!/usr/bin/env bash
# Runs docs/epochs.md's walk-through exactly as written (the shell block
# between the epoch-walkthrough markers), then checks what a reader would
# see: both payments' QCs printed, the fifth validator in the committee, every
# sidecar ready and none exited. Bounded by WALKTHROUGH_TIMEOUT (default
# 10m); every process it started is stopped on exit, and bin/ and epochnet/
# are removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/doc-block.sh

run_doc_block docs/epochs.md epoch-walkthrough epochnet "${WALKTHROUGH_TIMEOUT:-10m}" "
echo '== walk-through: checking the sidecars'
for i in 0 1 2 3 4; do
	allegro healthcheck --quiet --url http://127.0.0.1:717\$i/readyz
done
if [ \"\$(jobs -rp | wc -l)\" -ne 6 ]; then
	echo 'epoch-walkthrough: a background process of the walk-through exited' >&2
	jobs -l >&2
	tail -n 20 ./*.log >&2
	exit 1
fi"
if [ "$(grep -c '^QC 0x' "$doc_block_out")" -ne 2 ]; then
	echo "epoch-walkthrough: the payments printed $(grep -c '^QC 0x' "$doc_block_out") QCs, want 2" >&2
	exit 1
fi
if ! grep -q '^committee: 5 seats' "$doc_block_out"; then
	echo "epoch-walkthrough: the committee printed at the end does not have the fifth validator's seat" >&2
	exit 1
fi
echo "== epoch walk-through: a fifth validator joined from the chain, 5 sidecars ready, payments certified"
