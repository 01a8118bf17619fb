"""A masked-LM head fitted on a frozen encoder, so CWEA can run on an encoder shipped without one.

The offline default encoder (`core.models.default_encoder_dir()`, MiniLM-L6-H384) and the base-sized
MPNet (all-mpnet-base-v2) ship without an MLM head. `fit_mlm_head` wraps the encoder in its family's
masked LM (`AutoModelForMaskedLM`: BERT, RoBERTa or MPNet, `MLM_HEADS`) whose prediction head is trained
on BERT-style masked tokens of the given texts while every encoder weight stays fixed. Any other model
type is refused by name. Caching the result is the caller's business; this module reads nothing but the
encoder it is pointed at.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from core.batching import training_order

# model_type -> the masked LM's head attribute: BertForMaskedLM.cls, RobertaForMaskedLM / MPNetForMaskedLM.lm_head;
# each maps hidden states to vocabulary logits, its decoder tied to the word embeddings
MLM_HEADS = {"bert": "cls", "roberta": "lm_head", "mpnet": "lm_head"}


@dataclass(frozen=True)
class MlmHeadConfig:
    """How the MLM head is fitted."""

    steps: int = 300  # optimizer steps; the head is small and the encoder frozen, so a few hundred do
    batch_size: int = 32  # texts per step; epochs over the texts, each a fresh seeded order
    lr: float = 1e-3  # Adam learning rate for the head alone
    max_length: int = 64  # wordpieces per text; SST-2 fits, longer texts are truncated
    mask_prob: float = 0.15  # BERT's share of tokens chosen for prediction (of them 80/10/10)
    group_by_length: bool = True  # length-grouped batches (core/batching.py), as in training; False: random ones


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    maskable: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking (Devlin et al., 2019): choose mask_prob of the maskable positions, at least one
    per row; of those 80% become [MASK], 10% a random token, 10% stay. Returns (inputs, labels)."""
    scores = torch.rand(input_ids.shape, generator=generator).masked_fill(~maskable, 2.0)
    chosen = (scores < mask_prob) | (scores == scores.min(dim=1, keepdim=True).values)
    chosen &= maskable  # a row with nothing maskable stays unmasked
    labels = input_ids.masked_fill(~chosen, -100)
    action = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    inputs = torch.where(chosen & (action < 0.8), mask_token_id, input_ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


def _supported(config: PretrainedConfig, what: str) -> str:
    """The config's model type, or a ValueError naming it and CWEA when no masked-LM head is known for it."""
    model_type = config.model_type
    if model_type not in MLM_HEADS:
        raise ValueError(
            f"CWEA's masked-LM head: model type {model_type!r} ({what}) is not supported; "
            f"supported: {', '.join(MLM_HEADS)}"
        )
    return model_type


def masked_lm_head(model: PreTrainedModel) -> nn.Module:
    """The vocabulary head of a BERT, RoBERTa or MPNet masked LM, a map from hidden states to logits."""
    head = getattr(model, MLM_HEADS[_supported(model.config, type(model).__name__)], None)
    if head is None:
        raise ValueError(f"CWEA's masked-LM head: {type(model).__name__} is not a masked LM (no head to apply)")
    return head


def masked_lm_loss(
    model: PreTrainedModel, *, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy at the labelled positions, the encoder run without gradient."""
    with torch.no_grad():
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    chosen = labels != -100
    return F.cross_entropy(masked_lm_head(model)(hidden[chosen]), labels[chosen])  # head only on masked positions


def pad_batch(rows: Sequence[Sequence[int]], *, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id rows into (input_ids, attention_mask)."""
    lengths = torch.tensor([len(row) for row in rows])
    input_ids = torch.full((len(rows), int(lengths.max())), pad_token_id)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = torch.tensor(row)
    return input_ids, (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()


def _with_fresh_head(encoder: str | Path | PreTrainedModel, generator: torch.Generator) -> PreTrainedModel:
    """The encoder family's masked LM holding a copy of the encoder's weights and a head drawn from `generator`."""
    # Building a model initialises weights from torch's global RNG; fork_rng restores its state after,
    # and the head is then drawn from our own generator, so the result depends on the seed alone.
    with torch.random.fork_rng(devices=[]):
        if isinstance(encoder, PreTrainedModel):
            source = encoder.base_model  # the BertModel / RobertaModel / MPNetModel, also inside any *For* model
            _supported(source.config, type(encoder).__name__)
            model = AutoModelForMaskedLM.from_config(copy.deepcopy(source.config))
            missing, _ = model.base_model.load_state_dict(source.state_dict(), strict=False)  # a pooler is unused
            if missing:
                raise ValueError(f"encoder lacks weights {missing[:5]}: not a {source.config.model_type} encoder")
        else:
            _supported(AutoConfig.from_pretrained(encoder), str(encoder))
            model = AutoModelForMaskedLM.from_pretrained(encoder, use_safetensors=True)
    tied = model.get_input_embeddings().weight
    std = model.config.initializer_range
    with torch.no_grad():  # BERT's own initialiser: N(0, initializer_range), zero bias, LayerNorm 1/0
        for module in masked_lm_head(model).modules():  # in order: BERT's one draw is its transform's dense
            if isinstance(module, nn.Linear):
                if module.weight is not tied:  # the decoder is the word embedding table, which stays
                    module.weight.normal_(0.0, std, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()  # the decoder's bias is the head's output bias
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model


def _batch_rows(lengths: list[int], *, config: MlmHeadConfig, generator: torch.Generator) -> Iterator[list[int]]:
    """`config.steps` batches of row indices: epochs of `training_order`, as many as the steps need."""
    left = config.steps
    while left > 0:
        epoch = training_order(
            lengths, batch_size=config.batch_size, generator=generator, group_by_length=config.group_by_length
        )[:left]
        left -= len(epoch)
        yield from epoch


def fit_mlm_head(
    encoder: str | Path | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    config: MlmHeadConfig,
    seed: int,
) -> PreTrainedModel:
    """A masked LM (BERT, RoBERTa or MPNet) on a frozen copy of `encoder` (a folder or a model of that family)
    whose new head is trained on masked tokens of `texts`; returned in eval mode. The decoder is tied to the
    frozen word embeddings, so only the head's transform and output bias learn."""
    if not texts:
        raise ValueError("fit_mlm_head needs at least one text")
    generator = torch.Generator().manual_seed(seed)
    model = _with_fresh_head(encoder, generator)
    model.base_model.requires_grad_(False)
    model.eval()  # no dropout: the head learns on the same features it will see at inference
    head_params = [p for p in masked_lm_head(model).parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(head_params, lr=config.lr)
    rows = tokenizer(list(texts), truncation=True, max_length=config.max_length)["input_ids"]
    special = torch.tensor(tokenizer.all_special_ids)
    for picks in _batch_rows([len(row) for row in rows], config=config, generator=generator):
        input_ids, attention_mask = pad_batch([rows[i] for i in picks], pad_token_id=tokenizer.pad_token_id)
        inputs, labels = mask_tokens(
            input_ids,
            maskable=attention_mask.bool() & ~torch.isin(input_ids, special),
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=model.config.vocab_size,
            mask_prob=config.mask_prob,
            generator=generator,
        )
        loss = masked_lm_loss(model, input_ids=inputs, attention_mask=attention_mask, labels=labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model
