"""Encoded splits: token ids kept as flat int32 arrays, and raw lines encoded for predict.

Every split of a dataset is encoded once (`encode_split`) into an `EncodedSplit`, a
random-access source that grain reads like any data source; the batch pipelines
(pipeline.py) gather their batches from it.
"""

import itertools
from collections.abc import Sequence

import numpy as np
from absl import logging

from s2s_jax.data.buckets import bucket_of
from s2s_jax.data.errors import DataError
from s2s_jax.data.text_split import TextSplit
from s2s_jax.data.vocab import Vocab, tokenize

ON_LONG = ("drop", "error")


def _flatten(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, seqs), np.int32, len(seqs))  # [N]
    starts = np.zeros(len(seqs), np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    # The trailing 0 keeps gathers of masked positions in bounds even for empty data.
    flat = np.fromiter(itertools.chain(itertools.chain.from_iterable(seqs), [0]), np.int32)
    return flat, starts, lengths


def _gather(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    pos = np.arange(width)
    mask = pos < lengths[:, None]  # [B, width]
    return np.where(mask, flat[np.where(mask, starts[:, None] + pos, 0)], 0).astype(np.int32)


class EncodedSplit:
    """Random-access source of encoded examples, kept as flat int32 arrays.

    `split[i]` is {'inputs': int32 [n], 'targets': int32 [m]} without eos; grain
    reads it like any data source. `inputs_len` / `targets_len` ([N]) serve
    bucketing without touching the tokens.
    """

    def __init__(self, inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]):
        self._src, self._src_start, self.inputs_len = _flatten(inputs)
        self._tgt, self._tgt_start, self.targets_len = _flatten(targets)

    def __len__(self) -> int:
        return len(self.inputs_len)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        i = range(len(self))[i]  # bounds check and negative indices
        s, t = self._src_start[i], self._tgt_start[i]
        return {
            "inputs": self._src[s : s + self.inputs_len[i]],
            "targets": self._tgt[t : t + self.targets_len[i]],
        }

    def longest(self, indices: np.ndarray) -> int:
        """The most tokens either side of the examples at `indices` has (-1 rows: none)."""
        real = np.asarray(indices)[np.asarray(indices) >= 0]
        if not len(real):
            return 1
        return int(max(self.inputs_len[real].max(), self.targets_len[real].max(), 1))

    def batch(self, indices: np.ndarray, max_len: int) -> dict[str, np.ndarray]:
        """Pads the examples at `indices` (-1: a dummy all-zero row) into one batch whose
        sources are `max_len` wide (targets one more), a length that must hold them."""
        indices = np.asarray(indices)
        real = indices >= 0  # [B]
        safe = np.where(real, indices, 0)
        inputs_len = np.where(real, self.inputs_len[safe], 0).astype(np.int32)  # [B]
        tokens_len = np.where(real, self.targets_len[safe], 0)  # [B] without eos
        inputs = _gather(self._src, self._src_start[safe], inputs_len, max_len)  # [B, S]
        targets = _gather(self._tgt, self._tgt_start[safe], tokens_len, max_len + 1)  # [B, T]
        rows = np.flatnonzero(real)
        targets[rows, tokens_len[rows]] = Vocab.eos_id
        targets_len = np.where(real, tokens_len + 1, 0).astype(np.int32)  # [B]
        return {
            "inputs": inputs,
            "targets": targets,
            "inputs_len": inputs_len,
            "targets_len": targets_len,
        }


def encode_split(
    text: TextSplit, src_vocab: Vocab, tgt_vocab: Vocab, max_len: int, on_long: str, name: str
) -> EncodedSplit:
    """Encodes one split, dropping (and counting) or rejecting over-long examples.

    Args:
      text: the tokenized split.
      src_vocab: source vocabulary.
      tgt_vocab: target vocabulary.
      max_len: most tokens a side may have (the target gets one more slot for eos).
      on_long: 'drop' (warn with a count) or 'error' (raise DataError).
      name: split name for messages.

    Returns:
      The encoded split. Examples with an empty side (possible only in catalog
      data; local files reject them when parsed) are dropped with a warning too.
    """
    if on_long not in ON_LONG:
        raise DataError(f"unknown on_long={on_long!r}; choose one of {sorted(ON_LONG)}")
    inputs, targets, too_long, empty = [], [], 0, 0
    for i, (source, target) in enumerate(zip(text.sources, text.targets)):
        if not source or not target:
            empty += 1
            continue
        if max(len(source), len(target)) > max_len:
            if on_long == "error":
                raise DataError(
                    f"{text.where(i)}: {len(source)} source / {len(target)} target tokens, "
                    f"more than max_len={max_len}; raise max_len or set on_long='drop'"
                )
            too_long += 1
            continue
        inputs.append(src_vocab.encode(source))
        targets.append(tgt_vocab.encode(target))
    total = len(text.sources)
    if too_long:
        logging.warning(
            "%s: dropped %d of %d examples longer than max_len=%d "
            "(on_long='error' makes this an error)",
            name,
            too_long,
            total,
            max_len,
        )
    if empty:
        logging.warning("%s: dropped %d of %d examples with an empty side", name, empty, total)
    if not inputs:
        raise DataError(
            f"{text.origin}: no {name} example left after dropping {too_long} longer "
            f"than max_len={max_len} and {empty} empty; raise max_len"
        )
    return EncodedSplit(inputs, targets)


def encode_batch(
    src_vocab: Vocab,
    lines: Sequence[str],
    tokenizer: str,
    max_len: int,
    buckets: Sequence[int] = (),
) -> dict[str, np.ndarray]:
    """Encodes raw source lines for prediction.

    Args:
      src_vocab: the training source vocabulary.
      lines: one source text per entry.
      tokenizer: the tokenizer used for training.
      max_len: longer lines are truncated (with a warning).
      buckets: shape buckets (shape_buckets); S is the smallest that holds the longest line.

    Returns:
      {'inputs': int32 [N, S], 'inputs_len': int32 [N]}; unknown tokens map to unk,
      an empty line has length 0.
    """
    ids = [src_vocab.encode(tokenize(line, tokenizer)) for line in lines]
    truncated = sum(len(x) > max_len for x in ids)
    if truncated:
        logging.warning(
            "truncated %d of %d input lines to max_len=%d tokens", truncated, len(lines), max_len
        )
    flat, starts, lengths = _flatten([x[:max_len] for x in ids])  # lengths: [N]
    width = bucket_of(tuple(buckets) or (max_len,), max(int(lengths.max(initial=0)), 1))
    inputs = _gather(flat, starts, lengths, width)  # [N, S]
    return {"inputs": inputs, "inputs_len": lengths}
