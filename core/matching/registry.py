"""Which variant of each scorer runs, and why (pretrained weights when they can be had, offline-trained otherwise).

``choose_variant(scorer, requested)``: ``requested`` is auto | pretrained | offline. ``auto`` picks the pretrained
path only when the machine is online (core.offline.network_status; never attempted offline, so nothing hangs);
``build_scorer`` then falls back to the offline variant, saying so, when pretrained weights fail to load.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.matching.base import MatchScorer

SCORERS = ("lxmert", "clip", "early", "ion")
VARIANTS = ("auto", "pretrained", "offline")
HAS_PRETRAINED = {"lxmert": True, "clip": True, "early": False, "ion": False}
PRETRAINED_WEIGHTS = {"lxmert": "Hugging Face unc-nlp/lxmert-base-uncased", "clip": "open_clip ViT-B-32 / laion2b_s34b_b79k"}


@dataclass(frozen=True)
class VariantChoice:
    scorer: str
    variant: str  # "pretrained" | "offline"
    reason: str


def check_scorer(name: str) -> str:
    name = (name or "").strip().lower()
    if name not in SCORERS:
        raise ValueError(f"unknown scorer '{name}': choose one of {', '.join(SCORERS)}")
    return name


def choose_variant(scorer: str, requested: str = "auto") -> VariantChoice:
    """The variant to build for ``scorer`` and the reason, without loading anything."""
    from core.offline import network_status

    scorer = check_scorer(scorer)
    requested = (requested or "auto").lower()
    if requested not in VARIANTS:
        raise ValueError(f"unknown variant '{requested}': choose one of {', '.join(VARIANTS)}")
    if not HAS_PRETRAINED[scorer]:
        why = "built from the offline towers (MiniLM, EfficientNet-Lite0)" if scorer == "early" else "this project's own model"
        return VariantChoice(scorer, "offline", f"one variant: {why}")
    if requested == "offline":
        return VariantChoice(scorer, "offline", "requested")
    offline, why = network_status()
    if requested == "pretrained":
        if offline:
            raise ValueError(f"pretrained {scorer} ({PRETRAINED_WEIGHTS[scorer]}) needs the network, and this machine is offline ({why})")
        return VariantChoice(scorer, "pretrained", "requested")
    if offline:
        return VariantChoice(scorer, "offline", f"auto: no network ({why}), so {PRETRAINED_WEIGHTS[scorer]} cannot be had; "
                                                "offline variant trained on the catalog")
    return VariantChoice(scorer, "pretrained", f"auto: network available ({why}); {PRETRAINED_WEIGHTS[scorer]}")


def scorer_class(scorer: str) -> type[MatchScorer]:
    if scorer == "lxmert":
        from core.matching.lxmert import LxmertScorer

        return LxmertScorer
    if scorer == "clip":
        from core.matching.clip import ClipScorer

        return ClipScorer
    from core.matching.early_fusion import EarlyFusionScorer

    return EarlyFusionScorer


def _check_options(scorer: str, options: dict) -> None:
    """Unknown option names fail with the list of known ones (rather than a TypeError deep in a constructor)."""
    import inspect

    known = [n for n, p in inspect.signature(scorer_class(scorer).__init__).parameters.items()
             if n not in ("self", "region_dim", "variant") and p.kind is not p.VAR_KEYWORD]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown {scorer} option(s) {', '.join(unknown)}: choose from {', '.join(known)}")


def build_scorer(scorer: str, requested: str = "auto", *, region_dim: int = 1280, options: dict | None = None) -> MatchScorer:
    """A fresh (untrained) scorer of the chosen variant; ``ion`` is built by core.matching.service (it needs an ION model)."""
    choice = choose_variant(scorer, requested)
    options = dict(options or {})
    if choice.scorer == "ion":
        raise ValueError("the ION scorer is built from an ION model: use core.matching.service.train_matcher('ion')")

    def make(variant: str) -> MatchScorer:
        cls = scorer_class(choice.scorer)
        if choice.scorer == "lxmert":
            return cls(region_dim, variant=variant, **options)
        if choice.scorer == "clip":
            return cls(variant, region_dim=region_dim, **options)
        return cls(region_dim=region_dim, **options)

    _check_options(choice.scorer, options)
    reason = choice.reason
    try:
        model = make(choice.variant)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch / load pretrained weights
        if choice.variant != "pretrained" or requested == "pretrained":
            raise
        model = make("offline")
        reason = f"auto: pretrained weights could not be loaded ({exc.__class__.__name__}: {str(exc)[:160]}); offline variant"
    model.reason = reason
    return model
