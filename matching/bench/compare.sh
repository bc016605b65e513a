#!/usr/bin/env bash
# Side-by-side timing of `gridshare clear` against pymarket 0.7.6's Huang and MUDA double auctions on identical seeded random books.
#
# Usage: bash matching/bench/compare.sh [ORDERS...]   (from anywhere; not run by CI)
#
#   ORDERS          book sizes to run, default "100 1000 10000" (or $SIZES).
#                   pymarket is quadratic: one Huang run takes ~14 s at 10000
#                   orders and ~40 s at 20000 on a 2-core Xeon, MUDA ~10 s and
#                   ~28 s, so sizes above 10000 take minutes per size (the
#                   defaults run in about 3 minutes, venv and build included).
# Environment:
#   SIZES           same as ORDERS, used when no argument is given
#   SEED            book seed, also MUDA's RandomState seed (default 42)
#   PRICE_DECIMALS  decimals of the generated prices (default 6; gen_books.py
#                   says why: pymarket clears nothing on a price tie where
#                   supply meets demand, and the output flags such a run)
#   REPS            repetitions of each gridshare run (default 7)
#   PYMARKET_REPS   repetitions of each pymarket run (default 3)
#   GRIDSHARE_CLEAR_ARGS  extra arguments for `gridshare clear` (default none)
#   SKIP_GRIDSHARE=1      time pymarket only (no cargo build)
#
# Needs python3 with venv and pip reaching PyPI, and cargo. Everything it
# installs goes into a throwaway virtualenv that is deleted on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
root="$(pwd)"

if [ "$#" -gt 0 ]; then
    sizes=("$@")
else
    read -r -a sizes <<<"${SIZES:-100 1000 10000}"
fi
for n in "${sizes[@]}"; do
    case "$n" in
        '' | *[!0-9]*) echo "compare.sh: book size '$n' is not a number" >&2; exit 2 ;;
    esac
    if [ "$n" -lt 2 ]; then echo "compare.sh: book size must be at least 2" >&2; exit 2; fi
done
seed="${SEED:-42}"
price_decimals="${PRICE_DECIMALS:-6}"
reps="${REPS:-7}"
pm_reps="${PYMARKET_REPS:-3}"
skip_gridshare="${SKIP_GRIDSHARE:-0}"
read -r -a clear_args <<<"${GRIDSHARE_CLEAR_ARGS:-}"

work="$(mktemp -d "${TMPDIR:-/tmp}/gridshare-compare.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- 1. our CLI, built once -------------------------------------------------
bin="$root/target/release/gridshare"
if [ "$skip_gridshare" != 1 ]; then
    echo "== cargo build --release --locked -p gridshare-cli" >&2
    cargo build --release --locked -p gridshare-cli >&2
    [ -x "$bin" ] || { echo "compare.sh: $bin was not built" >&2; exit 1; }
fi

# --- 2. pymarket in a throwaway virtualenv ----------------------------------
echo "== virtualenv with pymarket 0.7.6 in $work/venv" >&2
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
# pymarket 0.7.6 declares its own dependencies (numpy, pandas, matplotlib,
# networkx, pulp); it predates pandas 3, whose copy-on-write makes its Huang
# fail ("assignment destination is read-only"), hence the cap.
"$py" -m pip install --quiet --disable-pip-version-check 'pymarket==0.7.6' 'pandas<3' >&2

# The timing harness. `pymarket CSV MECH REPS SEED` times Market.run(MECH) on
# a Market already holding the book (bids are accepted before the clock
# starts; run() itself builds the DataFrame and clears); `gridshare BIN CSV
# REPS ARGS...` times the whole `BIN clear --orders CSV --json ARGS...` process.
# Both print one JSON object with the median in ms and a summary of the outcome.
cat >"$work/harness.py" <<'PY'
import csv, json, math, statistics, subprocess, sys, time, warnings

def pymarket_run(path, mech, reps, seed):
    warnings.simplefilter("ignore")  # pandas FutureWarnings from pymarket's internals
    import numpy as np
    import pymarket as pm
    mar = pm.Market()
    with open(path, newline="") as f:
        # user must be an int, and MUDA indexes its fee array by user, so users
        # are 0..N-1: one user per order.
        for user, row in enumerate(csv.DictReader(f)):
            mar.accept_bid(float(row["energy_kwh"]), float(row["price_per_kwh"]),
                           user, row["side"] == "buy", 0, True)
    times = []
    for _ in range(reps):
        kwargs = {"r": np.random.RandomState(seed)} if mech == "muda" else {}
        t0 = time.perf_counter()
        trans, extra = mar.run(mech, **kwargs)
        times.append((time.perf_counter() - t0) * 1e3)
    df = trans.get_df()
    ids = mar.bm.get_df()
    traded = df.merge(ids[["buying"]], left_on="bid", right_index=True)
    bought = float(traded.loc[traded.buying, "quantity"].sum())
    sold = float(traded.loc[~traded.buying, "quantity"].sum())
    if mech == "huang":
        prices = {"price_buy": extra.get("price_buy"), "price_sell": extra.get("price_sell")}
        degenerate = not extra
    else:
        prices = {"price_left": extra.get("price_left"), "price_right": extra.get("price_right")}
        degenerate = any(p is None or not math.isfinite(p) for p in prices.values())
    return {
        "median_ms": statistics.median(times), "ms": times,
        "bought_kwh": bought, "sold_kwh": sold, "fills": len(df),
        "prices": {k: (None if v is None else float(v)) for k, v in prices.items()},
        "no_crossing": degenerate,
    }

def gridshare_run(binary, path, reps, args):
    cmd = [binary, "clear", "--orders", path, "--json", *args]
    first = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # warm-up, checked
    if first.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {first.returncode}: {first.stderr.decode(errors='replace')[:2000]}")
    summary = {}
    try:
        out = json.loads(first.stdout)
        if isinstance(out, dict):
            for k, v in out.items():
                if isinstance(v, (int, float, str)) or v is None:
                    summary[k] = v
                elif isinstance(v, list):
                    summary[k] = f"{len(v)} entries"
    except ValueError:
        summary = {"note": "stdout is not JSON"}
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "ms": times, "summary": summary}

if __name__ == "__main__":
    if sys.argv[1] == "pymarket":
        res = pymarket_run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        res = gridshare_run(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])
    print(json.dumps(res))
PY

field() { "$py" -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print(v if not isinstance(v,(dict,list,bool)) else json.dumps(v))' "$1"; }
ratio() { "$py" -c 'import sys; a,b=sys.argv[1:]; print("-" if "-" in (a,b) else f"{float(a)/float(b):.1f}x")' "$1" "$2"; }

# --- 3. the machine and the versions ----------------------------------------
echo
echo "machine:   $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "python:    $("$py" -c 'import sys; print(sys.version.split()[0])')"
echo "pymarket:  $("$py" -c 'import warnings; warnings.simplefilter("ignore"); import pymarket, pandas, numpy; print(pymarket.__version__, "(pandas", pandas.__version__ + ", numpy", numpy.__version__ + ")")')"
if [ "$skip_gridshare" != 1 ]; then
    commit="no commit"
    if head="$(git -C "$root" rev-parse --short HEAD 2>/dev/null)"; then
        commit="commit $head"
        git -C "$root" diff --quiet HEAD -- 2>/dev/null || commit="$commit + uncommitted changes"
    fi
    echo "gridshare: $("$bin" --version 2>/dev/null || echo "(no --version)"), $commit, $(rustc --version)"
fi
echo "books:     seed $seed, energies 0.100..10.000 kWh, prices 0.05..0.40 per kWh with $price_decimals decimals, ~half buys"
echo "timing:    pymarket: median of $pm_reps in-process Market.run() calls (bids already accepted);"
echo "           gridshare: median of $reps wall-clock runs of the whole process"
echo "           \`gridshare clear --orders FILE --json${clear_args[*]:+ ${clear_args[*]}} > /dev/null\`, which includes"
echo "           process start, reading and parsing the CSV and writing the JSON (after one unmeasured warm-up run)."
echo

# --- 4. the runs --------------------------------------------------------------
rows=()
notes=()
for n in "${sizes[@]}"; do
    book="$work/book-$n.csv"
    python3 "$here/gen_books.py" --orders "$n" --seed "$seed" --price-decimals "$price_decimals" --out "$book"
    echo "== $n orders: pymarket huang" >&2
    huang="$("$py" "$work/harness.py" pymarket "$book" huang "$pm_reps" "$seed")"
    echo "== $n orders: pymarket muda" >&2
    muda="$("$py" "$work/harness.py" pymarket "$book" muda "$pm_reps" "$seed")"
    h_ms="$(field median_ms <<<"$huang")"
    m_ms="$(field median_ms <<<"$muda")"
    g_ms="-"
    if [ "$skip_gridshare" != 1 ]; then
        echo "== $n orders: gridshare" >&2
        grid="$("$py" "$work/harness.py" gridshare "$bin" "$book" "$reps" ${clear_args[@]+"${clear_args[@]}"})"
        g_ms="$(field median_ms <<<"$grid")"
        notes+=("$n orders, gridshare: $(field summary <<<"$grid")")
    fi
    for mech in huang muda; do
        res="$huang"; [ "$mech" = muda ] && res="$muda"
        line="$n orders, pymarket $mech: bought $(printf '%.3f' "$(field bought_kwh <<<"$res")") kWh, sold $(printf '%.3f' "$(field sold_kwh <<<"$res")") kWh, $(field fills <<<"$res") fills, prices $(field prices <<<"$res")"
        if [ "$(field no_crossing <<<"$res")" = true ]; then
            line="$line  <-- NO CROSSING FOUND (pymarket needs a strict crossing; a buy and a sell at the same price where the curves meet make it clear nothing, so this timing skips the allocation work)"
        fi
        notes+=("$line")
    done
    rows+=("$(printf '%8s %14.1f %14.1f %14s %12s %12s' "$n" "$h_ms" "$m_ms" \
        "$([ "$g_ms" = - ] && echo - || printf '%.1f' "$g_ms")" "$(ratio "$h_ms" "$g_ms")" "$(ratio "$m_ms" "$g_ms")")")
done

printf '%8s %14s %14s %14s %12s %12s\n' orders "pm huang ms" "pm muda ms" "gridshare ms" huang/grid muda/grid
printf '%s\n' "${rows[@]}"
echo
echo "outcomes (sanity check, not timed):"
printf '  %s\n' "${notes[@]}"
echo
echo "Not the same auction: pymarket's huang (Huang et al. 2002) excludes the marginal buyer and seller,"
echo "charges buyers and pays sellers two different prices and rations the long side; its muda (Segal-Halevi"
echo "et al. 2018) splits the book at random into two halves, each clearing at the other half's price."
echo "Both are truthful mechanisms that give up some volume, so traded volumes differ from gridshare's."
if [ "$skip_gridshare" = 1 ]; then
    echo "gridshare was skipped (SKIP_GRIDSHARE=1)."
fi
