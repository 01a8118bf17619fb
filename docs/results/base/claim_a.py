"""Claim (a) on the base-sized model: each backdoored model's CACC, ASR and clean flip, from a run's rows.

`python docs/results/base/claim_a.py [FOLDER ...]` (default: `base-gate`, session 10's gate run; `badnets-s11` is
session 11's) prints the Markdown table docs/results/base/README.md quotes, one row per M_b.
"""

import sys
from pathlib import Path

import polars as pl

here = Path(__file__).parent
folders = sys.argv[1:] or ["base-gate"]
print("| run | attack | seed | CACC | ASR | clean flip | claim (a), ASR >= 89 | M_b build (s) | peak RSS (MB) |")
print("|---|---|--:|--:|--:|--:|---|--:|--:|")
for folder in folders:
    rows = pl.read_parquet(here / folder / "trials" / "*.parquet")
    rows = rows.with_columns(
        pl.col("peak_rss_mb") if "peak_rss_mb" in rows.columns else pl.lit(None).alias("peak_rss_mb")
    )
    for r in rows.filter(pl.col("defense") == "none").sort("attack", "seed").iter_rows(named=True):
        verdict = "held" if r["asr"] >= 89 else "**did not hold**"
        peak = "" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        print(
            f"| {folder} | {r['attack']} | {r['seed']} | {r['cacc']:.2f} | {r['asr']:.2f} | {r['clean_flip']:.2f} "
            f"| {verdict} | {r['wall_s']:.0f} | {peak} |"
        )
