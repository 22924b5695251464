"""Every study config: the default experiment's structure plus a valid, buildable sweep grid."""

import importlib.util
import os
import re

import ml_collections
import pytest

from s2s_jax.models import attention, bridges, model, sampling
from s2s_jax.studies import grid
from s2s_jax.training import settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = ["bridges", "attention", "schedules", "cells"]
# (study, variant) -> points in its grid
GRID_SIZES = {
    **{
        (name, variant): size
        for name, size in [
            ("bridges", len(model.BRIDGE_SPELLINGS)),
            ("attention", 4),
            ("schedules", 13),
            ("cells", 4),
        ]
        for variant in ("", "tiny")
    },
    ("schedules", "converged"): 5,
    ("schedules", "converged_output"): 5,
}


def _load(name, variant=""):
    path = os.path.join(ROOT, "experiments", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"study_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def _structure(config):
    """Nested field names and value types (a ConfigDict's shape)."""
    return {
        k: _structure(v) if isinstance(v, ml_collections.ConfigDict) else type(v).__name__
        for k, v in config.items()
    }


@pytest.mark.parametrize("name,variant", sorted(GRID_SIZES))
def test_a_study_is_the_default_config_plus_a_sweep(name, variant):
    config = _load(name, variant)
    expected = _structure(_load("default", "tiny" if variant == "tiny" else ""))
    got = _structure(config)
    assert set(got.pop("sweep")) >= {"axes", "metrics", "seeds"}
    assert got == expected  # run.py, train and the alias flags see the fields they know
    axes = grid.config_axes(config)
    points = grid.points(config, axes)
    assert len(points) == GRID_SIZES[name, variant]
    grid.baseline_name(config, axes, points, [])  # a baseline, if any, names one point
    for point in points:  # every point is a model that builds and a schedule that is valid
        c = config.copy_and_resolve_references()
        for field, value in point.settings:
            node, leaf = field.rsplit(".", 1)
            c[node][leaf] = value
        model.build(settings.model_config(c, 24, 24))
        sampling.check_schedule(c.sampling.schedule, settings.schedule_params(c))
        assert c.train.steps == point.steps
    assert set(config.sweep.metrics) <= {
        "exact_match",
        "token_accuracy",
        "bleu",
        "loss",
        "free_token_accuracy",
        "exposure_gap",
    }


@pytest.mark.parametrize("name", STUDIES)
def test_an_unknown_variant_is_a_value_error(name):
    with pytest.raises(ValueError, match=f"unknown variant 'big' of experiments/{name}.py"):
        _load(name, "big")


@pytest.mark.parametrize("variant", ["", "tiny"])
def test_the_bridges_study_compares_every_bridge_and_attention(variant):
    """Its axis is the registry's bridges (no attention) and `attention` over the default
    experiment's initial state: a bridge added to bridges.BRIDGES joins the study."""
    c = _load("bridges", variant)
    ((field, values),) = c.sweep.axes
    assert field == "model.bridge" and sorted(values) == model.BRIDGE_SPELLINGS
    built = {}
    for value in values:
        c.model.bridge = value
        cfg = settings.model_config(c, 24, 24)
        built[value] = (cfg.bridge, cfg.attention)
    assert built == {
        **{b: (b, attention.NONE) for b in bridges.BRIDGES},
        "attention": (c.model.attention_init, c.model.attention_type),
    }


def test_model_config_reads_the_config_files_spelling_of_attention():
    """settings.model_config: bridge=attention is attention over attention_init's initial state;
    any other bridge has none, whatever attention_type and attention_init say."""
    c = _load("default")
    c.model.update(bridge="attention", attention_type="general", attention_init="concat")
    cfg = settings.model_config(c, 24, 24)
    assert (cfg.bridge, cfg.attention) == ("concat", "general")
    assert cfg.dec_hidden == 4 * c.model.hidden  # concat's width: twice two directions
    c.model.bridge = "copy"
    cfg = settings.model_config(c, 24, 24)
    assert (cfg.bridge, cfg.attention) == ("copy", attention.NONE)
    c.model.bridge = "bogus"
    with pytest.raises(
        ValueError,
        match=re.escape(f"unknown --bridge 'bogus'; choose one of {model.BRIDGE_SPELLINGS}"),
    ):
        settings.model_config(c, 24, 24)


def test_the_bridges_study_reaches_its_sampling_cap_within_its_steps():
    c = _load("bridges")
    sp = settings.schedule_params(c)
    p = sampling.probability_at(c.sampling.schedule, c.train.steps // 2, sp)
    assert float(p) == pytest.approx(c.sampling.probability)


@pytest.mark.parametrize(
    "variant,mode,feedback,values",
    [
        ("converged", "embedding", "model.sample_from", ("categorical", "argmax")),
        ("converged_output", "output", "model.output_gradient", (False, True)),
    ],
)
def test_the_converged_schedules_studies_compare_feedback_at_each_cap_with_teacher_forcing(
    variant, mode, feedback, values
):
    c = _load("schedules", variant)
    assert c.model.sampling_mode == mode
    points = grid.points(c, grid.config_axes(c))
    settings = [dict(p.settings) for p in points]
    teacher = [s for s in settings if s["sampling.probability"] == 0.0]
    assert len(teacher) == 1 and teacher[0]["sampling.schedule"] == "constant"
    fed = {(s["sampling.probability"], s[feedback]) for s in settings if s is not teacher[0]}
    assert fed == {(cap, value) for cap in (0.1, 0.25) for value in values}
    assert {p.steps for p in points} == {4000} and c.sweep.seeds == 8
    baseline = grid.baseline_name(c, grid.config_axes(c), points, [])
    assert dict(next(p for p in points if p.name == baseline).settings) == teacher[0]
    # the 600-step study's model but for the feedback: only the length of training differs
    short = _load("schedules")
    assert c.model.to_dict() == {**short.model.to_dict(), "sampling_mode": mode}
    assert c.train.warmup_steps == short.train.warmup_steps
