"""Every study config: the default experiment's structure plus a valid, buildable sweep grid."""
import importlib.util
import os

import ml_collections
import pytest

from s2s_jax import model, sampling, sweep, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = ["bridges", "attention", "schedules", "cells"]
GRID_SIZES = {"bridges": 6, "attention": 4, "schedules": 13, "cells": 4}


def _load(name, variant=""):
    path = os.path.join(ROOT, "experiments", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"study_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def _structure(config):
    """Nested field names and value types (a ConfigDict's shape)."""
    return {k: _structure(v) if isinstance(v, ml_collections.ConfigDict) else type(v).__name__
            for k, v in config.items()}


@pytest.mark.parametrize("variant", ["", "tiny"])
@pytest.mark.parametrize("name", STUDIES)
def test_a_study_is_the_default_config_plus_a_sweep(name, variant):
    config = _load(name, variant)
    expected = _structure(_load("default", variant))
    got = _structure(config)
    assert set(got.pop("sweep")) >= {"axes", "metrics", "seeds"}
    assert got == expected  # run.py, train and the alias flags see the fields they know
    points = sweep.grid(config, sweep.config_axes(config))
    assert len(points) == GRID_SIZES[name]
    for point in points:  # every point is a model that builds and a schedule that is valid
        c = config.copy_and_resolve_references()
        for field, value in point.settings:
            node, leaf = field.rsplit(".", 1)
            c[node][leaf] = value
        model.build(train.model_config(c, 24, 24))
        sampling.check_schedule(c.sampling.schedule, train.schedule_params(c))
        assert c.train.steps == point.steps
    assert set(config.sweep.metrics) <= {"exact_match", "token_accuracy", "bleu", "loss",
                                         "free_token_accuracy", "exposure_gap"}


@pytest.mark.parametrize("name", STUDIES)
def test_an_unknown_variant_is_a_value_error(name):
    with pytest.raises(ValueError, match=f"unknown variant 'big' of experiments/{name}.py"):
        _load(name, "big")


def test_the_bridges_study_reaches_its_sampling_cap_within_its_steps():
    c = _load("bridges")
    p = sampling.probability_at(c.sampling.schedule, c.train.steps // 2, train.schedule_params(c))
    assert float(p) == pytest.approx(c.sampling.probability)
