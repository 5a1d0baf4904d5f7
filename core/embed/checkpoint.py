"""Save / load an embedding model: state dict + config + vocabulary (+ free-form metadata) in one file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from core.embed.ion import ION, IONConfig
from core.embed.text import Vocabulary
from core.embed.totyemb import ToTYEmb, ToTYEmbConfig
from core.filestore import atomic_torch_save, load_torch_payload

FORMAT = "adlens-embed/1"
_KINDS = {"ion": (ION, IONConfig), "totyemb": (ToTYEmb, ToTYEmbConfig)}


@dataclass
class Checkpoint:
    model: nn.Module
    vocab: Vocabulary
    meta: dict = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: ION | ToTYEmb, vocab: Vocabulary, meta: dict | None = None) -> Path:
    """Write the checkpoint atomically (temp file + rename). ``meta`` must hold plain Python values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "kind": model.kind,
        "config": model.config.to_dict(),
        "vocab": vocab.to_dict(),
        "meta": dict(meta or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> Checkpoint:
    """Rebuild the model (eval mode, on ``device``) with its vocabulary; clear errors for bad files."""
    path = Path(path)
    payload = load_torch_payload(path, kind="embedding", fmt=FORMAT)
    kind = payload.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"{path}: unknown model kind {kind!r}")
    model_cls, config_cls = _KINDS[kind]
    model = model_cls(config_cls.from_dict(payload["config"]))
    try:
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    except RuntimeError as exc:  # tensor shapes that differ from the config's
        raise ValueError(f"{path}: the checkpoint does not fit its model ({str(exc).splitlines()[-1].strip()})") from None
    # checkpoints from before region standardisation lack its buffers: their defaults (identity) are what they used
    missing = [k for k in missing if not k.endswith(("feature_mean", "feature_std"))]
    if missing or unexpected:
        raise ValueError(f"{path}: the checkpoint does not fit its model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.to(device).eval()
    return Checkpoint(model, Vocabulary.from_dict(payload["vocab"]), payload.get("meta", {}))
