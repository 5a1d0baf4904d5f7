"""Training recipes: AdLens's defaults and the paper's own, one switch per deviation.

Every way AdLens trains ION / ToTYEmb differently from the papers is one :class:`Deviation` here, with the
option that turns it off. ``--recipe paper`` turns them all off at once (the paper's exact recipe, a row of
the experiments table); ``--recipe adlens`` (the default) keeps AdLens's choices. An explicit option given
beside a recipe wins over the recipe. docs/ion_training.md explains each deviation with its measurements;
``tests/test_recipe_switch.py`` checks that this list and that page agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECIPES = ("adlens", "paper")
PAPER_EPOCHS = 30  # ION: Adam 1e-3, batch 32, 30 epochs
TOTYEMB_PAPER_EPOCHS, TOTYEMB_PAPER_BATCH = 10, 16  # ToTYEmb's paper


@dataclass(frozen=True)
class Deviation:
    """One departure from the paper: the option that controls it, its AdLens and paper values, and why."""

    name: str
    option: str  # a model option (IONConfig / ToTYEmbConfig field) or a training option (TrainConfig field)
    target: str  # "model" or "train"
    adlens: Any  # AdLens's default (None for epochs: chosen from the catalogue size)
    paper: Any
    kinds: tuple[str, ...]
    why: str


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation("BatchNorm neck", "neck", "model", "batchnorm", "none", ("ion",),
              "the batch-hardest triplet loss collapses every ad onto one point on a ~1,000-ad catalogue"),
    Deviation("region standardisation", "region_norm", "model", "standardise", "none", ("ion", "totyemb"),
              "unnormalised detector features swamp the word states at initialisation"),
    Deviation("pre-norm text encoder", "text_norm", "model", "pre", "post", ("ion", "totyemb"),
              "the post-norm Transformer at lr 1e-3 trains unevenly across seeds"),
    Deviation("MiniLM word vectors", "word_init", "model", "minilm", "random", ("ion", "totyemb"),
              "~20 training ads per category are too few to learn word meanings from scratch"),
    Deviation("text-guided SCA", "sca", "model", "additive", "literal", ("ion",),
              "eq. 6 as printed ranks the regions of an ad the same whatever the text says"),
    Deviation("class-balanced batches", "sampler", "train", "balanced", "random", ("ion",),
              "a random batch of 32 from 60 categories holds few positives for the hardest-positive triplet"),
    Deviation("step-based epochs", "epochs", "train", None, PAPER_EPOCHS, ("ion",),
              "30 epochs of a small catalogue are too few optimiser steps (at least 4,000 steps, at most 100 epochs)"),
    Deviation("ToTYEmb step-based epochs", "epochs", "train", None, TOTYEMB_PAPER_EPOCHS, ("totyemb",),
              "10 epochs of a small catalogue are too few optimiser steps (at least 4,000 steps, at most 100 epochs)"),
    Deviation("ToTYEmb batch of 32", "batch_size", "train", 32, TOTYEMB_PAPER_BATCH, ("totyemb",),
              "one batch size for both models, so that their training steps compare"),
)

def recipe_options(kind: str, recipe: str = "adlens") -> tuple[dict[str, Any], dict[str, Any]]:
    """(model options, training options) that a recipe sets for a model kind; AdLens's are the code defaults.

    >>> recipe_options("ion", "paper")[1]
    {'sampler': 'random', 'epochs': 30}
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for dev in DEVIATIONS:
        if kind not in dev.kinds:
            continue
        value = dev.paper if recipe == "paper" else dev.adlens
        if value is None:
            continue
        (model if dev.target == "model" else train)[dev.option] = value
    return model, train


def deviations_in_use(kind: str, model_config: dict[str, Any], train_config: dict[str, Any]) -> list[str]:
    """Names of the deviations a trained model used (read from its stored configs), for the app and the tables."""
    used = []
    ablated = set(model_config.get("ablate") or ())
    for dev in DEVIATIONS:
        if kind not in dev.kinds or (dev.option == "sca" and "sca" in ablated):
            continue
        source = model_config if dev.target == "model" else train_config
        value = source.get(dev.option)
        if value is not None and value != dev.paper:
            used.append(dev.name)
    return used
