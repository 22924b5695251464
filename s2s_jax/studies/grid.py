"""The grid of a sweep: its axes (from the config's `sweep` section and --axis / --set flags),
its points, and the baseline point that results.md compares the others with.

Everything here is checked against the config's own fields and types before any run starts, so a
typo in a field, a value of the wrong type or a baseline that names no point is one line
(GridError) rather than a failure inside every run. s2s_jax/studies/sweep.py turns the points
into runs;
its docstring describes the `sweep` section.
"""

import difflib
import itertools
import os
from typing import NamedTuple

import ml_collections

from s2s_jax import config_files


class GridError(ValueError):
    """Bad grid input: the message is the one line the sweep command prints."""


class Axis(NamedTuple):
    fields: tuple  # dotted config fields that vary together
    values: tuple  # one tuple per setting, one entry per field


class Point(NamedTuple):
    name: str  # directory name, e.g. 'bridge=dense' or 'cell=gru,layers=2'
    settings: tuple  # ((field, value), ...) of the axes
    steps: int  # the runs' last step (train.steps with every override applied)


def load_config(spec: str):
    """Loads `FILE[:VARIANT]` the way run.py's --config does.

    Returns:
      (absolute file path, variant, ConfigDict).
    """
    path, _, variant = spec.partition(":")
    path = os.path.abspath(path)
    try:
        return path, variant, config_files.load_config_file(path, variant)
    except FileNotFoundError as err:
        raise GridError(str(err)) from None


def _node(config, field: str):
    """The ConfigDict holding `field` and the leaf name; GridError for an unknown field."""
    node, parts = config, field.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            close = difflib.get_close_matches(part, known, n=1)
            hint = f" (did you mean {'.'.join(parts[:i] + close)}?)" if close else ""
            raise GridError(f"unknown config field {field!r}{hint}")
        if i < len(parts) - 1:
            node = node[part]
    if isinstance(node[parts[-1]], ml_collections.ConfigDict):
        raise GridError(f"config field {field!r} is a section, not a value")
    return node, parts[-1]


def _coerce(config, field: str, value):
    """`value` as the type of config field `field`; GridError when it does not fit.

    Checked here, before any run starts, because ml_collections would only reject it inside
    every run (and a bool would silently pass as an int).
    """
    node, leaf = _node(config, field)
    current = node[leaf]
    kind = type(current)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise GridError(
        f"{field} = {value!r} is a {type(value).__name__}; the field holds a "
        f"{kind.__name__} (like {current!r})"
    )


def _parse_value(config, field: str, text: str):
    """A command-line string as the type of `field` (for --axis and --set)."""
    node, leaf = _node(config, field)
    kind = type(node[leaf])
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        return kind(text)
    except ValueError:
        raise GridError(f"{field}={text!r} is not a {kind.__name__}") from None


def config_axes(config) -> list:
    """The config's `sweep.axes` as validated Axis tuples (values coerced to the field types)."""
    if "sweep" not in config or "axes" not in config.sweep:
        return []
    axes = []
    for entry in config.sweep.axes:
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise GridError(f"sweep.axes entries are (field, values) pairs, got {entry!r}")
        fields, values = entry
        coupled = not isinstance(fields, str)
        fields = tuple(fields) if coupled else (fields,)
        settings = []
        for value in values:
            value = tuple(value) if coupled else (value,)
            if len(value) != len(fields):
                raise GridError(f"axis {fields}: value {value!r} needs one entry per field")
            settings.append(tuple(_coerce(config, f, v) for f, v in zip(fields, value)))
        axes.append(Axis(fields, tuple(settings)))
    return axes


def apply_axis_flags(config, axes: list, flags_: list) -> list:
    """Applies --axis=FIELD=V1,V2,...: replaces that field's axis, or adds a new one."""
    axes = list(axes)
    for text in flags_:
        field, sep, values = text.partition("=")
        if not sep:
            raise GridError(f"--axis={text!r} must look like FIELD=VALUE1,VALUE2")
        settings = tuple((_parse_value(config, field, v),) for v in values.split(",") if v)
        axis = Axis((field,), settings)
        same = [i for i, a in enumerate(axes) if a.fields == (field,)]
        if same:
            axes[same[0]] = axis
        elif any(field in a.fields for a in axes):
            raise GridError(
                f"--axis={field}: the field is part of a coupled axis of the config; "
                f"edit the config's sweep.axes instead"
            )
        else:
            axes.append(axis)
    return axes


def parse_set_flags(config, axes: list, flags_: list) -> tuple:
    """--set=FIELD=VALUE flags as ((field, value), ...) applied to every point."""
    fixed = []
    for text in flags_:
        field, sep, value = text.partition("=")
        if not sep:
            raise GridError(f"--set={text!r} must look like FIELD=VALUE")
        if any(field in a.fields for a in axes):
            raise GridError(f"--set={field}: the field is an axis of the grid; use --axis")
        fixed.append((field, _parse_value(config, field, value)))
    return tuple(fixed)


def _short_names(fields: list) -> dict:
    """Field -> its last component, or the whole dotted name where the last is ambiguous."""
    last = [f.rsplit(".", 1)[-1] for f in fields]
    return {f: (s if last.count(s) == 1 else f) for f, s in zip(fields, last)}


def format_value(value) -> str:
    """A value as ml_collections' --config.FIELD=VALUE parses it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def points(config, axes: list, fixed: tuple = ()) -> list:
    """Every point of the product of `axes`, in order (the first axis varies slowest).

    Raises:
      GridError: no axes, an axis without values, or two points with the same name.
    """
    if not axes or any(not a.values for a in axes):
        raise GridError("the grid is empty: give sweep.axes in the config or --axis=FIELD=V1,V2")
    fields = [f for a in axes for f in a.fields]
    short = _short_names(fields)
    result = []
    for combo in itertools.product(*(a.values for a in axes)):
        settings = tuple(zip(fields, (v for setting in combo for v in setting)))
        name = ",".join(f"{short[f]}={format_value(v)}" for f, v in settings).replace("/", "_")
        point_config = config.copy_and_resolve_references()
        for field, value in fixed + settings:
            node, leaf = _node(point_config, field)
            node[leaf] = value
        result.append(Point(name, settings, int(point_config.train.steps)))
    names = [p.name for p in result]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise GridError(f"grid points share a name: {twice}")
    return result


def baseline_name(config, axes: list, points: list, flags_: list) -> str:
    """The name of the grid point results.md compares the others with ('' for none).

    Raises:
      GridError: a malformed pair, a field that is not an axis, or not exactly one match.
    """
    if flags_ == ["none"]:
        return ""
    pairs = []
    if flags_:
        for text in flags_:
            field, sep, value = text.partition("=")
            if not sep:
                raise GridError(f"--baseline={text!r} must look like FIELD=VALUE (or none)")
            pairs.append((field, _parse_value(config, field, value)))
    else:
        for entry in config.get("sweep", {}).get("baseline", ()):
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise GridError(f"sweep.baseline entries are (field, value) pairs, got {entry!r}")
            pairs.append((entry[0], _coerce(config, entry[0], entry[1])))
    if not pairs:
        return ""
    axis_fields = {f for a in axes for f in a.fields}
    for field, _ in pairs:
        if field not in axis_fields:
            raise GridError(
                f"baseline field {field!r} is not an axis of the grid; a baseline "
                "names one grid point by its axis values"
            )
    matches = [p.name for p in points if all(dict(p.settings)[f] == v for f, v in pairs)]
    if len(matches) != 1:
        named = ",".join(f"{f}={format_value(v)}" for f, v in pairs)
        raise GridError(
            f"baseline {named} matches {len(matches)} grid points {matches}; give "
            "--baseline=FIELD=VALUE flags that name exactly one, or --baseline=none"
        )
    return matches[0]
