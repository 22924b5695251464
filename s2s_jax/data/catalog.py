"""TFDS catalog datasets named 'tfds:NAME[/CONFIG][:VERSION]', read as array_record.

Prepared data under data_dir is opened with `tfds.builder_from_directory`, which
needs neither the network nor the dataset's own code. Only with
tfds_download=True does a missing dataset get downloaded and prepared; otherwise
the error says how to prepare it, and nothing touches the network.
"""

import glob
import os

import tensorflow_datasets as tfds

from s2s_jax.data.errors import DataError
from s2s_jax.data.text_split import TextSplit, carve, read_data_source

PREFIX = "tfds:"
_VALID_NAMES = ("validation", "valid", "dev")


def parse_name(dataset: str) -> tuple[str, str | None, str | None]:
    """'tfds:wmt14_translate/de-en:1.0.0' -> ('wmt14_translate', 'de-en', '1.0.0')."""
    spec = dataset.removeprefix(PREFIX)
    spec, _, version = spec.partition(":")
    name, _, config = spec.partition("/")
    if not name:
        raise DataError(
            f"dataset {dataset!r}: write it as 'tfds:NAME/CONFIG', e.g. "
            "'tfds:wmt14_translate/de-en'"
        )
    return name, config or None, version or None


def _version_key(path: str) -> tuple:
    try:
        return tuple(int(x) for x in os.path.basename(os.path.dirname(path)).split("."))
    except ValueError:
        return ()  # 'incomplete.XXXX' and other leftovers never win


def prepared_dir(data_dir: str, name: str, config: str | None, version: str | None) -> str | None:
    """Returns the newest prepared version directory, or None. Touches only the disk."""
    base = os.path.join(data_dir, name, *([config] if config else []))
    pattern = os.path.join(base, version or "*", "dataset_info.json")
    found = [p for p in glob.glob(pattern) if _version_key(p)]
    if not found and not config:
        # A dataset with configs keeps each under its own directory; accept the only one.
        found = [
            p
            for p in glob.glob(os.path.join(base, "*", version or "*", "dataset_info.json"))
            if _version_key(p)
        ]
        if len({os.path.dirname(os.path.dirname(p)) for p in found}) > 1:
            raise DataError(
                f"tfds:{name}: several configs are prepared under {base}; "
                f"name one, e.g. 'tfds:{name}/CONFIG'"
            )
    return os.path.dirname(max(found, key=_version_key)) if found else None


def _builder(dataset: str, cfg, data_dir: str):
    name, config, version = parse_name(dataset)
    path = prepared_dir(data_dir, name, config, version)
    if path:
        return tfds.builder_from_directory(path)
    full = name + (f"/{config}" if config else "") + (f":{version}" if version else "")
    if not cfg.tfds_download:
        raise DataError(
            f"{dataset}: no prepared data under {os.path.join(data_dir, name)}; set "
            f"tfds_download=True to download and prepare it there (needs network), or run "
            f"`tfds build {full} --data_dir={data_dir} --file_format=array_record` on a machine "
            "with network access, or set data_dir to a directory that already holds it"
        )
    builder = tfds.builder(full, data_dir=data_dir)
    builder.download_and_prepare(file_format="array_record")
    return builder


def load(dataset: str, cfg, data_dir: str) -> dict[str, TextSplit]:
    """Reads a catalog dataset into memory.

    Args:
      dataset: 'tfds:NAME[/CONFIG][:VERSION]'.
      cfg: data config; uses source_key, target_key (default: the dataset's
        supervised keys), tokenizer, tfds_download, valid_fraction.
      data_dir: TFDS data directory.

    Returns:
      {'train', 'valid', 'test'} -> TextSplit. Validation is the 'validation'
      (or 'valid'/'dev') split, else carved from train with a fixed seed.
    """
    builder = _builder(dataset, cfg, data_dir)
    try:
        sources = builder.as_data_source()
    except Exception as e:  # tfds raises several types for a non-array_record dataset
        raise DataError(
            f"{dataset}: cannot open {builder.data_dir} as array_record ({e}); "
            "prepare it again with file_format=array_record"
        ) from None
    source_key, target_key = cfg.source_key, cfg.target_key
    if not (source_key and target_key):
        keys = builder.info.supervised_keys
        if not (
            isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
        ):
            raise DataError(
                f"{dataset}: no (source, target) supervised keys; set source_key and "
                f"target_key to features of {sorted(builder.info.features.keys())}"
            )
        source_key, target_key = source_key or keys[0], target_key or keys[1]

    def read(split: str) -> TextSplit:
        return read_data_source(
            sources[split], f"{dataset} {split}", source_key, target_key, cfg.tokenizer
        )

    for required in ("train", "test"):
        if required not in sources:
            raise DataError(
                f"{dataset}: has no {required!r} split (has {sorted(sources)}); "
                "choose a dataset with train and test splits"
            )
    splits = {"train": read("train"), "test": read("test")}
    valid = next((s for s in _VALID_NAMES if s in sources), None)
    if valid:
        splits["valid"] = read(valid)
    else:
        splits["train"], splits["valid"] = carve(splits["train"], cfg.valid_fraction)
    return splits
