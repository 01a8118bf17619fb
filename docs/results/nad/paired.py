"""NAD and MBTSAD-with-a-CFT-teacher beside MBTSAD on the `cpu` grid's SST-2 backdoored models, seed by seed.

The new rows (`trials/`, code of the commit named in README.md) ran on the same M_b as the committed three-seed grid
(`../cpu/trials-sst2/`, code 6c4ba32fb75cbc14): this script first checks that every row both hold (M_b, CFT, and at
seed 0 TS-FT and MBTSAD, rebuilt as a check) has the same CACC, ASR and flip, so the pairing is on one M_b; then it
prints MBTSAD minus each new row per (attack, seed), in points. `python docs/results/nad/paired.py`
"""

from pathlib import Path

import polars as pl

HERE = Path(__file__).parent
KEY = ["attack", "defense", "augmentation", "seed"]
SCORES = ["cacc", "asr", "clean_flip"]


def rows(folder: Path) -> pl.DataFrame:
    columns = [*KEY, "dataset", "status", *SCORES]
    frames = [pl.read_parquet(f, columns=columns) for f in sorted(folder.glob("*.parquet"))]
    return pl.concat(frames, how="vertical_relaxed").filter(pl.col("status") == "ok", pl.col("dataset") == "sst2")


new, old = rows(HERE / "trials"), rows(HERE.parent / "cpu" / "trials-sst2")
both = new.join(old, on=KEY, nulls_equal=True, suffix="_old")
differ = both.filter(pl.any_horizontal(pl.col(c) != pl.col(f"{c}_old") for c in SCORES))
print(f"rows in both runs: {len(both)}; with another CACC, ASR or flip: {len(differ)}")
if len(differ):
    print(differ)
mbtsad = old.filter(pl.col("defense") == "mbtsad").select("attack", "seed", pl.col("asr").alias("m_asr"),
                                                          pl.col("cacc").alias("m_cacc"))
print("| attack | seed | row | CACC | ASR | flip | MBTSAD ASR | MBTSAD − row ΔASR | ΔCACC |")
print("|---|--:|---|--:|--:|--:|--:|--:|--:|")
table = new.filter(pl.col("defense").is_in(["nad", "mbtsad-cft-teacher", "cft"])).join(mbtsad, on=["attack", "seed"])
for r in table.sort("attack", "defense", "seed").iter_rows(named=True):
    print(f"| {r['attack']} | {r['seed']} | {r['defense']} | {r['cacc']:.2f} | {r['asr']:.2f} | {r['clean_flip']:.2f} "
          f"| {r['m_asr']:.2f} | {r['m_asr'] - r['asr']:+.2f} | {r['m_cacc'] - r['cacc']:+.2f} |")
summary = table.group_by("attack", "defense").agg(
    pl.len().alias("seeds"), (pl.col("m_asr") - pl.col("asr")).mean().alias("d_asr"),
    (pl.col("m_asr") < pl.col("asr")).sum().alias("mbtsad_lower"))
print()
for r in summary.sort("attack", "defense").iter_rows(named=True):
    print(f"{r['attack']} {r['defense']}: MBTSAD − row ΔASR {r['d_asr']:+.2f} over {r['seeds']} seeds, "
          f"MBTSAD lower in {r['mbtsad_lower']} of {r['seeds']}")
