"""The grid of a sweep: axes from the config and the flags, points, the baseline, bad input."""

import ml_collections
import pytest

from s2s_jax.studies import grid


def _config():
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict({"bridge": "dense", "layers": 1, "bidirectional": True})
    c.sampling = ml_collections.ConfigDict({"schedule": "constant", "k": 1.0, "probability": 0.25})
    c.train = ml_collections.ConfigDict({"steps": 40, "seed": 0})
    return c


def test_grid_is_the_product_of_the_axes_with_coupled_fields_varying_together():
    c = _config()
    c.sweep = ml_collections.ConfigDict()
    c.sweep.axes = [
        ("model.layers", [1, 2]),
        (("sampling.schedule", "sampling.k"), [("linear", 1), ("exponential", 0.99)]),
    ]
    points = grid.points(c, grid.config_axes(c))
    assert [p.name for p in points] == [
        "layers=1,schedule=linear,k=1.0",
        "layers=1,schedule=exponential,k=0.99",
        "layers=2,schedule=linear,k=1.0",
        "layers=2,schedule=exponential,k=0.99",
    ]
    assert points[1].settings == (
        ("model.layers", 1),
        ("sampling.schedule", "exponential"),
        ("sampling.k", 0.99),
    )
    assert isinstance(points[0].settings[2][1], float)  # an int given for a float field


def test_axis_and_set_flags_replace_add_and_fix_fields():
    c = _config()
    axes = [grid.Axis(("model.bridge",), (("zero",), ("copy",)))]
    axes = grid.apply_axis_flags(c, axes, ["model.bridge=dense", "model.bidirectional=true,false"])
    fixed = grid.parse_set_flags(c, axes, ["train.steps=7"])
    points = grid.points(c, axes, fixed)
    assert [p.name for p in points] == [
        "bridge=dense,bidirectional=true",
        "bridge=dense,bidirectional=false",
    ]
    assert all(p.steps == 7 for p in points)  # --set reaches the point's final step


@pytest.mark.parametrize(
    "axes,flags,message",
    [
        ([], [], "the grid is empty"),
        ([grid.Axis(("model.bridge",), ())], [], "the grid is empty"),
        (
            [],
            ["model.bridg=zero"],
            "unknown config field 'model.bridg' (did you mean model.bridge?)",
        ),
        ([], ["model=zero"], "is a section"),
        ([], ["model.layers=two"], "'two' is not a int"),
        ([], ["model.bidirectional=maybe"], "not a bool"),
    ],
)
def test_bad_grids_are_rejected_before_anything_runs(axes, flags, message):
    c = _config()
    with pytest.raises(grid.GridError) as err:
        grid.points(c, grid.apply_axis_flags(c, axes, flags))
    assert message in str(err.value)


def test_config_axis_values_must_fit_the_field_type():
    c = _config()
    c.sweep = ml_collections.ConfigDict()
    c.sweep.axes = [("model.layers", [1, True])]
    with pytest.raises(grid.GridError, match="the field holds a int"):
        grid.config_axes(c)
    with pytest.raises(grid.GridError, match="is an axis"):
        grid.parse_set_flags(c, [grid.Axis(("model.layers",), ((1,),))], ["model.layers=2"])


def _grid_with_baseline(baseline):
    c = _config()
    c.sweep = ml_collections.ConfigDict()
    c.sweep.axes = [("model.layers", [1, 2]), ("sampling.probability", [0.0, 0.25])]
    c.sweep.baseline = baseline
    axes = grid.config_axes(c)
    return c, axes, grid.points(c, axes)


def test_the_baseline_names_one_grid_point_from_the_config_or_the_flags():
    c, axes, points = _grid_with_baseline([("sampling.probability", 0), ("model.layers", 1)])
    assert grid.baseline_name(c, axes, points, []) == "layers=1,probability=0.0"
    flags_ = ["model.layers=2", "sampling.probability=0"]  # the flags replace the config's
    assert grid.baseline_name(c, axes, points, flags_) == "layers=2,probability=0.0"
    assert grid.baseline_name(c, axes, points, ["none"]) == ""
    c, axes, points = _grid_with_baseline([])
    assert grid.baseline_name(c, axes, points, []) == ""


@pytest.mark.parametrize(
    "baseline,flags_,message",
    [
        ([("sampling.probability", 0.0)], [], "matches 2 grid points"),
        ([("sampling.probability", 0.5)], [], "matches 0 grid points"),
        ([], ["model.layers=3"], "matches 0 grid points"),
        ([("model.bridge", "dense")], [], "'model.bridge' is not an axis of the grid"),
        ([("sampling.probability",)], [], "sweep.baseline entries are (field, value) pairs"),
        ([], ["model.layers"], "must look like FIELD=VALUE"),
        ([], ["model.layers=two"], "'two' is not a int"),
    ],
)
def test_a_baseline_that_does_not_name_exactly_one_point_is_rejected(baseline, flags_, message):
    c, axes, points = _grid_with_baseline(baseline)
    with pytest.raises(grid.GridError) as err:
        grid.baseline_name(c, axes, points, flags_)
    assert message in str(err.value)
