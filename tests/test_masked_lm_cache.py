"""CWEA's fitted MLM head is built once and then read back from the artifact store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.augment import cwea
from core.mlm import MlmHeadConfig
from orchestration.masked_lm import cached_masked_lm
from orchestration.store import MANIFEST, ArtifactStore


def test_mlm_head_is_fitted_once_and_reloaded(tiny, sst2_small, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    texts = sst2_small.train.texts[:64]
    config = MlmHeadConfig(steps=3, batch_size=8, max_length=32)
    first = cached_masked_lm(store, tiny.model, tiny.tokenizer, texts, config=config, seed=0)
    built = list((tmp_path / "mlm-head").glob(f"*/{MANIFEST}"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    second = cached_masked_lm(store, tiny.model, tiny.tokenizer, texts, config=config, seed=0)
    assert built[0].stat().st_mtime_ns == stamp and len(list((tmp_path / "mlm-head").glob("*/"))) == 1
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    cached_masked_lm(store, tiny.model, tiny.tokenizer, texts, config=config, seed=1)
    assert len(list((tmp_path / "mlm-head").glob(f"*/{MANIFEST}"))) == 2
    out = cwea(texts[0], np.random.default_rng(0), masked_lm=second)
    assert out == cwea(texts[0], np.random.default_rng(0), masked_lm=first)
