"""Encoded splits and the grain pipelines that turn them into fixed-shape batches.

Every batch is a dict of int32 numpy arrays with the same shapes for the whole
run, so jit compiles once:
  inputs       [B, S]  source ids, 0 (pad) after inputs_len; no bos/eos.
  targets      [B, T]  target ids, then one eos (2), then 0; T = S + 1.
  inputs_len   [B]
  targets_len  [B]     counts the eos; 0 marks a dummy row (eval padding).
S is max_len. "Bucketing" groups examples of similar length into the same batch;
it never changes shapes.
"""

import itertools
from typing import Iterator, Sequence

from absl import logging
import grain
import numpy as np

from s2s_jax.data.errors import DataError
from s2s_jax.data.text_split import TextSplit
from s2s_jax.data.vocab import tokenize, Vocab

ON_LONG = ("drop", "error")
# Batches are cheap numpy gathers; prefetch threads would only compete for the
# two cores with the train step.
_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


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

    def batch(self, indices: np.ndarray, max_len: int) -> dict[str, np.ndarray]:
        """Pads the examples at `indices` (-1: a dummy all-zero row) into one batch."""
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


def _host_batch(batch_size: int, process_count: int, process_index: int) -> int:
    if not 0 <= process_index < process_count:
        raise DataError(f"process_index={process_index} is outside 0..{process_count - 1}")
    per_host = batch_size // process_count
    if per_host < 1:
        raise DataError(
            f"batch_size={batch_size} is smaller than process_count={process_count}; "
            "raise batch_size"
        )
    return per_host


class _TrainBatches:
    """step -> the batch of this host at that step; pure in (seed, step).

    Each epoch: permute all examples with a key derived from (seed, epoch), cut
    off the remainder that does not fill a global batch, sort each window of
    `window` global batches by length, cut into global batches, shuffle their
    order. Host h takes rows [h*B, (h+1)*B) of each global batch, so hosts see
    disjoint examples of similar length at every step.
    """

    def __init__(
        self,
        split: EncodedSplit,
        max_len: int,
        host_batch: int,
        process_index: int,
        process_count: int,
        seed: int,
        window: int,
    ):
        self.split, self.max_len, self.seed, self.window = split, max_len, seed, max(1, window)
        self.rows = slice(process_index * host_batch, (process_index + 1) * host_batch)
        self.global_batch = host_batch * process_count
        self.num_batches = len(split) // self.global_batch
        if self.num_batches < 1:
            raise DataError(
                f"the train split has {len(split)} examples, fewer than one global batch "
                f"of {self.global_batch}; lower batch_size or add data"
            )
        # Longer inputs first decide the order, targets break ties.
        self.sort_key = split.inputs_len.astype(np.int64) * (max_len + 2) + split.targets_len
        self._cached = (None, None)

    def plan(self, epoch: int) -> np.ndarray:
        """Example indices of every global batch of an epoch: [num_batches, global_batch]."""
        if self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.split))[: self.num_batches * self.global_batch]
        size = self.window * self.global_batch
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            order[start : start + size] = chunk[np.argsort(self.sort_key[chunk], kind="stable")]
        batches = order.reshape(self.num_batches, self.global_batch)
        batches = batches[rng.permutation(self.num_batches)]
        self._cached = (epoch, batches)
        return batches

    def __call__(self, step: int, _) -> dict[str, np.ndarray]:
        epoch, i = divmod(step, self.num_batches)
        return self.split.batch(self.plan(epoch)[i, self.rows], self.max_len)


def train_iterator(
    data,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    bucket_window: int = 8,
    worker_count: int = 0,
):
    """The infinite, resumable training batch iterator of this host.

    Args:
      data: a Data from load_data.
      batch_size: global batch size; this host yields batch_size // process_count
        rows; examples that do not fill a global batch are dropped each epoch.
      seed: shuffling seed; the same seed gives the same batches.
      process_index: this host.
      process_count: number of hosts.
      bucket_window: number of global batches whose examples are sorted by length
        together; 1 turns bucketing off.
      worker_count: grain worker processes; 0 builds batches in this process.

    Returns:
      A grain iterator over batch dicts with `get_state()` / `set_state()`; the
      state is {'next_index': step} for worker_count=0, so a restored iterator
      yields exactly the batches the original would have yielded next.
    """
    host_batch = _host_batch(batch_size, process_count, process_index)
    batches = _TrainBatches(
        data.splits["train"],
        data.max_len,
        host_batch,
        process_index,
        process_count,
        seed,
        bucket_window,
    )
    # repeat() makes the index run forever; the batch function turns it into (epoch, step).
    ds = grain.MapDataset.source(range(batches.num_batches)).repeat().map_with_index(batches)
    ds = ds.to_iter_dataset(_READ_OPTIONS)
    if worker_count:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(ds)


class EvalBatches:
    """Finite, ordered, re-iterable batches of one split for one host.

    Global batch k holds examples [k*G, (k+1)*G) of the split; host h takes rows
    [h*B, (h+1)*B). Positions past the end are dummy rows (all zeros,
    targets_len = 0), so every host runs the same number of batches and every
    example is seen exactly once over all hosts.
    """

    def __init__(
        self,
        split: EncodedSplit,
        max_len: int,
        host_batch: int,
        process_index: int,
        process_count: int,
    ):
        self.split, self.max_len = split, max_len
        global_batch = host_batch * process_count
        self.num_batches = -(-len(split) // global_batch)
        starts = np.arange(self.num_batches)[:, None] * global_batch + process_index * host_batch
        indices = starts + np.arange(host_batch)  # [num_batches, B]
        self.indices = np.where(indices < len(split), indices, -1)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        return self.split.batch(self.indices[k], self.max_len)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self[k] for k in range(self.num_batches))


def eval_batches(
    data, split: str, batch_size: int, process_index: int = 0, process_count: int = 1
) -> EvalBatches:
    """Batches covering every example of a split once, in order.

    Args:
      data: a Data from load_data.
      split: 'train', 'valid' or 'test'.
      batch_size: global batch size (this host gets batch_size // process_count rows).
      process_index: this host.
      process_count: number of hosts.

    Returns:
      A re-iterable sequence of batch dicts; the last ones are padded with dummy
      rows whose targets_len is 0.
    """
    if split not in data.splits:
        raise DataError(f"unknown split {split!r}; choose one of {sorted(data.splits)}")
    host_batch = _host_batch(batch_size, process_count, process_index)
    return EvalBatches(data.splits[split], data.max_len, host_batch, process_index, process_count)


def encode_batch(
    src_vocab: Vocab, lines: Sequence[str], tokenizer: str, max_len: int
) -> dict[str, np.ndarray]:
    """Encodes raw source lines for prediction.

    Args:
      src_vocab: the training source vocabulary.
      lines: one source text per entry.
      tokenizer: the tokenizer used for training.
      max_len: S; longer lines are truncated (with a warning).

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
    inputs = _gather(flat, starts, lengths, max_len)  # [N, S]
    return {"inputs": inputs, "inputs_len": lengths}
