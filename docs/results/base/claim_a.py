"""Claim (a) on the base-sized model: each backdoored model's CACC, ASR and clean flip, from the gate run's rows.

`python docs/results/base/claim_a.py` prints the Markdown table docs/results/base/README.md quotes.
"""

from pathlib import Path

import polars as pl

rows = pl.read_parquet(Path(__file__).parent / "base-gate" / "trials" / "*.parquet")
print("| attack | seed | CACC | ASR | clean flip | claim (a), ASR >= 89 | M_b build (s) |")
print("|---|--:|--:|--:|--:|---|--:|")
for r in rows.filter(pl.col("defense") == "none").sort("attack", "seed").iter_rows(named=True):
    verdict = "held" if r["asr"] >= 89 else "**did not hold**"
    print(f"| {r['attack']} | {r['seed']} | {r['cacc']:.2f} | {r['asr']:.2f} | {r['clean_flip']:.2f} | {verdict} "
          f"| {r['wall_s']:.0f} |")
