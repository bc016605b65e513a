#!/usr/bin/env bash
# `gridshare clear` against GNU sort on the same order file, side by side in
# one run: a seeded CSV of ORDERS orders (default 1,000,000) in random id
# order, like the files a household's tools write (ids `h` + 16 hex digits,
# 0.1 to 10 kWh, 40 price levels). Prints the median wall time of REPS runs
# (default 5) of each: `sort FILE`, `gridshare clear --orders FILE` (the
# table) and the same with --json, all to /dev/null.
#
# Usage: bash wallet-cli/bench/clear_vs_sort.sh [ORDERS]   (not run by CI)
# Needs awk and GNU coreutils; builds the release `gridshare` with cargo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
orders="${1:-1000000}"
reps="${REPS:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
book="$work/book.csv"

cargo build --release --locked -p gridshare-cli >&2
awk -v n="$orders" 'BEGIN {
    srand(7)
    print "id,side,energy_kwh,price_per_kwh"
    for (i = 0; i < n; i++) {
        id = "h"
        for (d = 0; d < 16; d++) id = id sprintf("%x", int(rand() * 16))
        side = rand() < 0.5 ? "buy" : "sell"
        wh = 100 + int(rand() * 9901)
        price = 50000 + 10000 * int(rand() * 40)
        printf "%s,%s,%d.%03d,0.%06d\n", id, side, int(wh / 1000), wh % 1000, price
    }
}' > "$book"
echo "$(wc -l < "$book") lines, $(du -h "$book" | cut -f1), $(nproc) cores, LC_ALL=${LC_ALL:-} LANG=${LANG:-}"

median() {
    local name="$1"; shift
    local times=()
    for _ in $(seq "$reps"); do
        local start end
        start=$(date +%s.%N)
        "$@" > /dev/null
        end=$(date +%s.%N)
        times+=("$(echo "$end - $start" | bc)")
    done
    printf '%-28s %.3f s\n' "$name" "$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((reps + 1) / 2))p")"
}

median "sort" sort "$book"
median "gridshare clear" target/release/gridshare clear --orders "$book"
median "gridshare clear --json" target/release/gridshare clear --orders "$book" --json
