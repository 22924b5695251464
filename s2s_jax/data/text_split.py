"""Tokenized text examples of one split, as every dataset loader returns them."""

from typing import NamedTuple

import numpy as np

from s2s_jax.data.errors import DataError
from s2s_jax.data.vocab import tokenize


class TextSplit(NamedTuple):
    """Token lists of one split plus where each example came from, for error messages.

    Attributes:
      sources: source token lists.
      targets: target token lists, same length as sources.
      origin: a file path or a dataset name.
      lines: 1-based line numbers in `origin` per example, or None when examples
        are only numbered.
    """

    sources: list
    targets: list
    origin: str
    lines: list | None = None

    def where(self, i: int) -> str:
        """Names example i for a message, e.g. 'train.tsv:12' or 'tfds:x train example 3'."""
        return f"{self.origin}:{self.lines[i]}" if self.lines else f"{self.origin} example {i}"

    def subset(self, indices) -> "TextSplit":
        return TextSplit(
            [self.sources[i] for i in indices],
            [self.targets[i] for i in indices],
            self.origin,
            [self.lines[i] for i in indices] if self.lines else None,
        )


def carve(train: TextSplit, fraction: float, seed: int = 0) -> tuple[TextSplit, TextSplit]:
    """Splits a validation set off the training set with a fixed seed.

    Args:
      train: the full training split.
      fraction: share of examples moved to validation (at least one).
      seed: fixed so every run and every host carve the same examples.

    Returns:
      (train, valid), both keeping the original example order.
    """
    n = len(train.sources)
    if n < 2 or not 0 < fraction < 1:
        raise DataError(
            f"{train.origin}: cannot carve a validation split (fraction {fraction}) "
            f"from {n} examples; give valid_file or set 0 < valid_fraction < 1"
        )
    k = min(n - 1, max(1, round(n * fraction)))  # both sides keep an example
    valid = np.zeros(n, bool)
    valid[np.random.default_rng(seed).choice(n, k, replace=False)] = True
    return train.subset(np.flatnonzero(~valid)), train.subset(np.flatnonzero(valid))


def _text(example: dict, key: str, where: str) -> str:
    value = example
    for part in key.split("/"):  # 'translation/en' reaches into nested features
        if not isinstance(value, dict) or part not in value:
            found = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise DataError(
                f"{where}: no feature {key!r} (found {found}); set source_key/target_key"
            )
        value = value[part]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{where}: feature {key!r} is not valid UTF-8 ({e.reason} at byte "
                f"{e.start}); choose a text feature as source_key/target_key"
            ) from None
    if isinstance(value, str):
        return value
    raise DataError(
        f"{where}: feature {key!r} is {type(value).__name__}, not text; "
        "choose a text feature as source_key/target_key"
    )


def read_data_source(
    source, origin: str, source_key: str, target_key: str, tokenizer: str, chunk: int = 4096
) -> TextSplit:
    """Reads a whole TFDS data source (array_record) into token lists.

    Reads in batches (`__getitems__`): one record at a time pays the reader's per-call cost for
    every record.

    Args:
      source: a TFDS data source of feature dicts.
      origin: name used in messages, e.g. 'tfds:wmt14_translate/de-en train'.
      source_key: feature holding the source text; '/' separates nested keys.
      target_key: feature holding the target text.
      tokenizer: 'word' or 'char'.
      chunk: records per read.

    Returns:
      The split, examples in the data source's order.
    """
    sources, targets = [], []
    n = len(source)
    for start in range(0, n, chunk):
        for i, ex in enumerate(
            source.__getitems__(list(range(start, min(start + chunk, n)))), start
        ):
            where = f"{origin} example {i}"
            sources.append(tokenize(_text(ex, source_key, where), tokenizer))
            targets.append(tokenize(_text(ex, target_key, where), tokenizer))
    return TextSplit(sources, targets, origin)
