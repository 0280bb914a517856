#!/usr/bin/env bash
# Runs README.md's "Running a validator" recipe exactly as written (the
# shell block between the operator-recipe markers), then checks what a reader
# would see: the payment's QC printed, every sidecar ready, and no sidecar
# exited. Bounded by RECIPE_TIMEOUT (default 10m); every process it started
# is stopped on exit, and bin/ and localnet/ are removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

for d in bin localnet; do
	if [ -e "$d" ]; then
		echo "operator-recipe: ./$d exists; the recipe writes there, so move it away first" >&2
		exit 2
	fi
done

block=$(awk '
	/<!-- operator-recipe:begin -->/ { inside = 1; next }
	/<!-- operator-recipe:end -->/   { inside = 0 }
	inside && /^```/                 { next }
	inside                           { print }
' README.md)
if [ -z "$block" ]; then
	echo "operator-recipe: no block between the operator-recipe markers in README.md" >&2
	exit 2
fi

out=$(mktemp)
cleanup() {
	# Stop the recipe's process group, then anything of ours left by name.
	if [ -n "${recipe_pid:-}" ]; then
		kill -- -"$recipe_pid" 2>/dev/null || true
	fi
	pkill -f "$repo/bin/allegro" 2>/dev/null || true
	rm -rf "$repo/bin" "$repo/localnet" "$out"
}
trap cleanup EXIT

# The block runs in its own shell and process group, with the checks
# appended so they see the processes it started before they are stopped.
script="$block
echo '== recipe: checking the sidecars'
for i in 0 1 2 3; do
	allegro healthcheck --quiet --url http://127.0.0.1:707\$i/readyz
done
if [ \"\$(jobs -rp | wc -l)\" -ne 5 ]; then
	echo 'operator-recipe: a background process of the recipe exited' >&2
	jobs -l >&2
	tail -n 20 ./*.log >&2
	exit 1
fi
"
# timeout makes its own process group, which the recipe's background jobs
# join: cleanup stops all of them with one signal.
timeout "${RECIPE_TIMEOUT:-10m}" bash -euo pipefail -c "$script" >"$out" 2>&1 &
recipe_pid=$!
status=0
wait "$recipe_pid" || status=$?
cat "$out"
if [ "$status" != 0 ]; then
	echo "operator-recipe: the recipe failed (exit $status)" >&2
	tail -n 20 "$repo"/localnet/*.log >&2 2>/dev/null || true
	exit 1
fi
if ! grep -q '^QC 0x' "$out"; then
	echo "operator-recipe: the payment printed no QC" >&2
	exit 1
fi
echo "== operator recipe: 4 sidecars ready, payment certified"
