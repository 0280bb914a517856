#!/usr/bin/env bash
# Runs a shell block of the documentation exactly as written, for the
# scripts that check a recipe a reader follows (operator-recipe.sh,
# epoch-walkthrough.sh). Source it, then call
#
#   run_doc_block DOC MARKER WORKDIR TIMEOUT CHECKS
#
# DOC is the Markdown file, MARKER the name in its <!-- MARKER:begin --> and
# <!-- MARKER:end --> comments, WORKDIR the directory the block creates
# (removed afterwards, with bin/), TIMEOUT a timeout(1) duration, and CHECKS
# shell appended to the block, run before its background processes are
# stopped. The block's output is left in $doc_block_out. Every process the
# block started is stopped when the calling script exits.
set -euo pipefail

run_doc_block() {
	local doc=$1 marker=$2 workdir=$3 limit=$4 checks=$5
	repo=$PWD
	for d in bin "$workdir"; do
		if [ -e "$d" ]; then
			echo "$marker: ./$d exists; the block writes there, so move it away first" >&2
			exit 2
		fi
	done
	local block
	block=$(awk -v begin="<!-- $marker:begin -->" -v end="<!-- $marker:end -->" '
		$0 == begin { inside = 1; next }
		$0 == end   { inside = 0 }
		inside && /^```/ { next }
		inside      { print }
	' "$doc")
	if [ -z "$block" ]; then
		echo "$marker: no block between the $marker markers in $doc" >&2
		exit 2
	fi
	doc_block_out=$(mktemp)
	doc_block_workdir=$workdir
	trap doc_block_cleanup EXIT
	# The block runs in its own shell and process group, with the checks
	# appended so they see the processes it started before they are
	# stopped. timeout makes its own process group, which the block's
	# background jobs join: cleanup stops all of them with one signal.
	timeout "$limit" bash -euo pipefail -c "$block
$checks" >"$doc_block_out" 2>&1 &
	doc_block_pid=$!
	local status=0
	wait "$doc_block_pid" || status=$?
	cat "$doc_block_out"
	if [ "$status" != 0 ]; then
		echo "$marker: the block failed (exit $status)" >&2
		tail -n 20 "$repo/$workdir"/*.log >&2 2>/dev/null || true
		exit 1
	fi
}

doc_block_cleanup() {
	# Stop the block's process group, then anything of ours left by name.
	if [ -n "${doc_block_pid:-}" ]; then
		kill -- -"$doc_block_pid" 2>/dev/null || true
	fi
	pkill -f "$repo/bin/allegro" 2>/dev/null || true
	rm -rf "$repo/bin" "$repo/${doc_block_workdir:?}" "${doc_block_out:-}"
}
