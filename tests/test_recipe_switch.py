"""The paper-recipe switch and SCA that reads the text.

* ``--recipe paper`` turns every deviation of core.embed.recipe off at once; each deviation is one
  option, and none is always on; docs/ion_training.md lists every one.
* SCA in its literal form (eq. 6 as printed) orders an ad's regions the same whatever the text; the
  additive form lets two texts keep different regions of the same picture.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import torch
from retrieval_world import world

from core.embed.ion import ION, IONConfig
from core.embed.recipe import DEVIATIONS, RECIPES, deviations_in_use, recipe_options
from core.embed.totyemb import ToTYEmbConfig
from core.embed.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "ion_training.md"
CONFIGS = {"ion": IONConfig, "totyemb": ToTYEmbConfig}


def test_every_deviation_is_a_working_switch_and_documented():
    doc = DOCS.read_text(encoding="utf-8")
    train_fields = {f.name for f in fields(TrainConfig)}
    for dev in DEVIATIONS:
        assert dev.adlens != dev.paper, dev.name
        assert f"`{dev.option}`" in doc and dev.name in doc, f"docs/ion_training.md must list {dev.name} with its switch"
        for kind in dev.kinds:
            if dev.target == "model":
                cls = CONFIGS[kind]
                assert dev.option in {f.name for f in fields(cls)}
                extra = {"class_labels": (0, 1)} if kind == "totyemb" else {}
                for value in (dev.adlens, dev.paper):  # both settings build a model config
                    assert getattr(cls(vocab_size=10, region_dim=4, **extra, **{dev.option: value}), dev.option) == value
                # AdLens's value is the code default: the recipe changes nothing that a plain config would not do
                assert getattr(cls(vocab_size=10, region_dim=4, **extra), dev.option) == dev.adlens
            else:
                assert dev.option in train_fields
                TrainConfig(**{dev.option: dev.paper}, device="cpu")


@pytest.mark.parametrize("kind", ["ion", "totyemb"])
def test_paper_recipe_turns_every_deviation_off(kind):
    model, train = recipe_options(kind, "paper")
    mine = [d for d in DEVIATIONS if kind in d.kinds]
    assert mine and {**model, **train} == {d.option: d.paper for d in mine}
    assert deviations_in_use(kind, model, train) == []
    adlens_model, adlens_train = recipe_options(kind, "adlens")
    # every deviation whose AdLens value is fixed is on in the default recipe (epochs are chosen from the catalogue size)
    assert set(deviations_in_use(kind, adlens_model, {**adlens_train, "epochs": 100})) == {d.name for d in mine}
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_options(kind, "fast")
    assert set(RECIPES) == {"adlens", "paper"}


def test_option_of_another_model_is_refused():
    from core.embed.pipeline import build_model

    with pytest.raises(ValueError, match="sca do not apply to totyemb"):
        build_model("totyemb", 20, 4, class_labels=(0, 1), sca="literal")


def _ion(sca: str, seed: int = 0) -> ION:
    torch.manual_seed(seed)
    return ION(IONConfig(vocab_size=40, region_dim=8, d_model=16, layers=1, heads=2, k1=6, k2=3, dropout=0.0, sca=sca,
                         word_init="random")).eval()


def _texts_and_regions(n_texts: int = 12):
    gen = torch.Generator().manual_seed(7)
    tokens = torch.randint(1, 40, (n_texts, 5), generator=gen)
    mask = torch.ones(n_texts, 5, dtype=torch.bool)
    regions = torch.randn(1, 6, 8, generator=gen).expand(n_texts, 6, 8).contiguous()  # the same picture for every text
    return tokens, mask, regions, torch.ones(n_texts, 6, dtype=torch.bool)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_literal_sca_orders_the_regions_the_same_whatever_the_text(seed):
    tokens, tmask, regions, rmask = _texts_and_regions()
    alpha = _ion("literal", seed).clue_scores(tokens, tmask, regions, rmask)
    orders = {tuple(torch.argsort(a, descending=True).tolist()) for a in alpha}
    assert len(orders) == 1
    assert alpha.std(dim=0).max() > 1e-4  # the text does move the scores, only all alike


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_additive_sca_lets_the_text_choose_the_kept_regions(seed):
    tokens, tmask, regions, rmask = _texts_and_regions()
    model = _ion("additive", seed)
    alpha = model.clue_scores(tokens, tmask, regions, rmask)
    orders = {tuple(torch.argsort(a, descending=True).tolist()) for a in alpha}
    assert len(orders) >= 3
    out = model(tokens, tmask, regions, rmask, torch.linspace(0.9, 0.4, 6).expand(len(tokens), 6))
    kept = {frozenset(k.tolist()) for k in out.kept}
    assert len(kept) >= 2  # the same picture keeps different regions for different texts


def test_old_checkpoints_keep_the_literal_form():
    config = IONConfig(vocab_size=10, region_dim=4).to_dict()
    for key in ("sca", "region_norm", "neck", "text_norm", "word_init"):
        config.pop(key)
    old = IONConfig.from_dict(config)
    assert (old.sca, old.region_norm, old.neck) == ("literal", "standardise", "none")


@pytest.fixture
def w(tmp_path_factory, monkeypatch):
    return world(tmp_path_factory.getbasetemp(), monkeypatch)


def test_train_run_with_the_paper_recipe(w):
    from core.retrieval import load_model, train_run
    from core.runs import delete_run, get_run, list_runs

    before = {r["id"] for r in list_runs("ion")}
    try:
        _paper_recipe_runs(w, load_model, train_run, get_run)
    finally:  # the world is shared with other modules, whose default ION must stay the world's own run
        for run in list_runs("ion"):
            if run["id"] not in before:
                delete_run(run["id"])


def _paper_recipe_runs(w, load_model, train_run, get_run):
    run_id = train_run("ion", (), {"d_model": 32, "layers": 1, "heads": 2, "k1": 5, "k2": 3, "seed": 0,
                                   "recipe": "paper"})
    run = get_run(run_id)
    assert run["status"] == "done" and run["metrics"]["deviations"] == [] and run["metrics"]["epochs"] == 30
    model = load_model(run).model
    cfg = model.config
    assert (cfg.neck, cfg.sca, cfg.text_norm, cfg.word_init, cfg.region_norm) == ("none", "literal", "post", "random", "none")
    assert torch.equal(model.region.feature_std, torch.ones_like(model.region.feature_std))  # no standardisation
    # the default recipe on the same world: every deviation named in the run's metrics
    default = get_run(w["ion"])
    names = set(default["metrics"]["deviations"])
    assert {"BatchNorm neck", "text-guided SCA", "class-balanced batches", "MiniLM word vectors"} <= names
    # an explicit option wins over the recipe
    mixed = train_run("ion", (), {"d_model": 32, "layers": 1, "heads": 2, "k1": 5, "k2": 3, "seed": 0,
                                  "recipe": "paper", "sca": "additive"})
    assert get_run(mixed)["metrics"]["deviations"] == ["text-guided SCA"]


def test_background_jobs_can_pass_every_switch_to_the_train_command():
    import typer.main

    from core.cli import app
    from core.jobs import TRAIN_FLAGS, cli_args

    train = typer.main.get_command(app).commands["train"]
    flags = {opt for param in train.params for opt in param.opts}
    assert set(TRAIN_FLAGS.values()) <= flags
    args = cli_args("ion", ["sca"], {"recipe": "paper", "sca": "literal", "region_drop": 0.1, "neck": "none"})
    assert args[:5] == ["train", "--model", "ion", "--ablate", "sca"] and "--region-drop" in args and "0.1" in args
    with pytest.raises(ValueError, match="cannot be passed"):
        cli_args("ion", [], {"word_init": "random"})
