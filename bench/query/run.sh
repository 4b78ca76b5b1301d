#!/usr/bin/env bash
# Many item queries in one `melgraph query --queries` call against the same queries made one
# call each (each call reads the index and starts a backend again), on an index melgraph
# exported:
#
#   bench/query/run.sh INDEX [QUERIES] [SINGLE_CALLS]
#
# QUERIES (default 10000) item ids, the index's ids in turn, go through one --queries call;
# SINGLE_CALLS (default 50) of them are timed as `query --item` calls, and their mean time is
# extrapolated to QUERIES calls. Prints both times and their ratio; also checks that each timed
# single call's result ids are the batch's for that query. Device and threads: $MELGRAPH_QUERY_ARGS
# (default "--device cpu").
# Uses the build in $MELGRAPH_BUILD_DIR (default build/).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${MELGRAPH_BUILD_DIR:-$repo/build}
[[ $build = /* ]] || build=$repo/$build
melgraph=$build/apps/melgraph
[[ -x $melgraph ]] || { echo "run.sh: error: $melgraph not built (run scripts/build, or set MELGRAPH_BUILD_DIR)" >&2; exit 1; }
[[ $# -ge 1 ]] || { echo "usage: bench/query/run.sh INDEX [QUERIES] [SINGLE_CALLS]" >&2; exit 2; }
index=$1
queries=${2:-10000}
singles=${3:-50}
read -r -a args <<<"${MELGRAPH_QUERY_ARGS:---device cpu}"
command -v sqlite3 >/dev/null || { echo "run.sh: error: needs the sqlite3 shell (Debian's sqlite3)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sqlite3 "$index" 'SELECT id FROM items ORDER BY item' >"$work/ids"
n=$(wc -l <"$work/ids")
[[ $n -gt 0 ]] || { echo "run.sh: error: $index has no items" >&2; exit 1; }
awk -v q="$queries" '{ id[NR] = $0 } END { for (i = 0; i < q; ++i) print id[i % NR + 1] }' "$work/ids" >"$work/queries"

now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
t0=$(now)
"$melgraph" query "${args[@]}" --index "$index" -k 10 --queries "$work/queries" >"$work/batch.jsonl"
t1=$(now)
batch=$(calc "$t1 - $t0")

t0=$(now)
for ((i = 1; i <= singles; ++i)); do
  id=$(sed -n "${i}p" "$work/queries")
  "$melgraph" query "${args[@]}" --index "$index" -k 10 --json --item "$id" >"$work/single-$i.json"
done
t1=$(now)
single=$(calc "($t1 - $t0) / $singles")

# The single calls' ids against the batch's lines for the same queries.
python3 - "$work" "$singles" <<'PY'
import json, sys
work, singles = sys.argv[1], int(sys.argv[2])
batch = [json.loads(l) for l in open(f"{work}/batch.jsonl")]
for i in range(1, singles + 1):
    one = json.load(open(f"{work}/single-{i}.json"))
    a = [r["id"] for r in one["results"]]
    b = [r["id"] for r in batch[i - 1]["results"]]
    if a != b:
        sys.exit(f"run.sh: query {i} ({one['query']}): single call {a}, batch {b}")
PY

printf 'index: %s (%d items), %d queries, k = 10, %s\n' "$index" "$n" "$queries" "${args[*]}"
printf 'one --queries call:          %8.2f s (%.1f us per query)\n' "$batch" "$(calc "$batch * 1000000 / $queries")"
printf 'single calls (%d timed):     %8.3f s each -> %.1f s for %d\n' "$singles" "$single" "$(calc "$single * $queries")" "$queries"
printf 'batch speed-up:              %8.0fx (results of the timed single calls equal the batch'"'"'s)\n' \
  "$(calc "$single * $queries / $batch")"
