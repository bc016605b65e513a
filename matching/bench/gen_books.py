"""Write seeded, deterministic random household order books as CSV for the pymarket comparison (compare.sh)."""

# Each book is one file in the format `gridshare clear --orders FILE` reads:
#
#     id,side,energy_kwh,price_per_kwh
#     o000000,sell,2.500,0.110000
#
# compare.sh feeds the very same file to gridshare and, through its own small
# Python harness, to pymarket, so both sides clear an identical book.
#
# The book looks like one delivery interval of a neighbourhood market: energies
# 0.100..10.000 kWh (3 decimals), limit prices 0.05..0.40 per kWh (6 decimals,
# i.e. gridshare's micro-currency, by default; --price-decimals 1..6), each
# order independently a buy or a sell with probability 1/2.
#
# Why 6 decimals by default: pymarket's Huang and MUDA only find a clearing
# price where the demand and supply curves cross strictly; a buy and a sell at
# the same price exactly where they meet makes pymarket clear nothing at all.
# With 4 decimals that happens in about half of the books of 3000 or more
# orders; with 6 it is rare (compare.sh flags it when it does happen).
# Everything is derived from random.Random(seed).random() only, whose output
# Python guarantees to be reproducible across versions, so a given (orders,
# seed) pair gives a byte-identical file anywhere. Standard library only: this
# runs with any python3, no virtualenv needed.

import argparse
import random
import sys

ENERGY_MILLI_KWH = (100, 10_000)  # 0.100 .. 10.000 kWh
PRICE_PER_KWH = ("0.05", "0.40")


def uniform_int(rng: random.Random, lo: int, hi: int) -> int:
    """An integer in [lo, hi] from rng.random() alone (stable across Python versions)."""
    return lo + min(int(rng.random() * (hi - lo + 1)), hi - lo)


def price_range(decimals: int):
    """PRICE_PER_KWH in units of 10**-decimals, as integers."""
    scale = 10**decimals
    lo, hi = (round(float(p) * scale) for p in PRICE_PER_KWH)
    return lo, hi


def book_rows(orders: int, seed: int, price_decimals: int = 6):
    """Yields (id, side, energy_kwh, price_per_kwh) as the CSV strings."""
    rng = random.Random(seed)
    p_lo, p_hi = price_range(price_decimals)
    p_scale = 10**price_decimals
    width = max(6, len(str(orders - 1)))
    for i in range(orders):
        side = "buy" if rng.random() < 0.5 else "sell"
        energy = uniform_int(rng, *ENERGY_MILLI_KWH)
        price = uniform_int(rng, p_lo, p_hi)
        yield (
            f"o{i:0{width}d}",
            side,
            f"{energy // 1000}.{energy % 1000:03d}",
            f"{price // p_scale}.{price % p_scale:0{price_decimals}d}",
        )


def write_book(out, orders: int, seed: int, price_decimals: int) -> None:
    out.write("id,side,energy_kwh,price_per_kwh\n")
    for row in book_rows(orders, seed, price_decimals):
        out.write(",".join(row) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, required=True, help="number of orders in the book (>= 2)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--price-decimals", type=int, default=6, help="decimals of the limit prices, 1..6 (default 6)"
    )
    parser.add_argument("--out", default="-", help="output CSV path, '-' for stdout (default)")
    args = parser.parse_args(argv)
    if args.orders < 2:
        parser.error("--orders must be at least 2")
    if not 1 <= args.price_decimals <= 6:
        parser.error("--price-decimals must be 1..6")
    if args.out == "-":
        write_book(sys.stdout, args.orders, args.seed, args.price_decimals)
    else:
        with open(args.out, "w", encoding="ascii", newline="\n") as out:
            write_book(out, args.orders, args.seed, args.price_decimals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
