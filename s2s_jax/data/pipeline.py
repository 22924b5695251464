"""Encoded splits and the grain pipelines that turn them into batches of a few static shapes.

Every batch is a dict of int32 numpy arrays:
  inputs       [B, S]  source ids, 0 (pad) after inputs_len; no bos/eos.
  targets      [B, T]  target ids, then one eos (2), then 0; T = S + 1.
  inputs_len   [B]
  targets_len  [B]     counts the eos; 0 marks a dummy row (eval padding).
S is the batch's shape bucket: the smallest of a static list of lengths (`data.buckets`,
ending with max_len) that holds every example of the global batch on both sides, so jit
compiles once per bucket and the decoder scan runs the bucket's T steps, not max_len + 1.
With one bucket (the default) every batch is [B, max_len]. Training batches are cut from
windows of examples sorted by length, so that a batch's examples have similar lengths and
the small buckets get used; evaluation batches are sorted too when there are several buckets.
"""

from collections.abc import Iterator, Sequence

import grain
import numpy as np

from s2s_jax.data.buckets import bucket_of, check_token_budget
from s2s_jax.data.encoding import EncodedSplit
from s2s_jax.data.errors import DataError

BATCH_TYPES = ("sentences", "tokens")  # what train.batch_size counts
# Batches are cheap numpy gathers; prefetch threads would only compete for the
# two cores with the train step.
_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


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

    Each epoch: permute all examples with a key derived from (seed, epoch), sort each window
    of examples by length, cut the window into global batches, shuffle their order. By
    sentences, a global batch holds `global_batch` examples (the remainder of an epoch that
    does not fill one is dropped); by tokens, as many as fit `tokens` padded target
    positions in its shape bucket, rounded down to a multiple of `multiple` rows (the
    devices), the last batch of a window filled up with dummy rows: one shape per bucket.
    Host h takes its share of the rows of each global batch, so hosts see disjoint examples
    of similar length, padded to one shape, at every step.
    """

    def __init__(
        self,
        split: EncodedSplit,
        max_len: int,
        process_index: int,
        process_count: int,
        seed: int,
        window: int,
        buckets: Sequence[int] = (),
        global_batch: int = 0,
        tokens: int = 0,
        multiple: int = 1,
    ):
        self.split, self.max_len, self.seed, self.window = split, max_len, seed, max(1, window)
        self.buckets = tuple(buckets) or (max_len,)
        self.process_index, self.process_count = process_index, process_count
        self.global_batch, self.tokens = global_batch, tokens
        self.longest = np.maximum(split.inputs_len, split.targets_len)
        # Longer inputs decide the order, targets break ties.
        self.sort_key = split.inputs_len.astype(np.int64) * (max_len + 2) + split.targets_len
        if tokens:
            step = multiple * process_count  # every host the same share, every device too
            self.rows = {b: tokens // (b + 1) // step * step for b in self.buckets}  # per bucket
            check_token_budget(tokens, max_len, step)
            self.chunk = self.window * self.rows[self.buckets[0]]  # examples sorted together
        else:
            self.chunk = self.window * global_batch
        if not tokens and len(split) // global_batch < 1:
            raise DataError(
                f"the train split has {len(split)} examples, fewer than one global batch "
                f"of {global_batch}; lower batch_size or add data"
            )
        self._plans = {}  # epoch -> its global batches
        self._starts = [0]  # step at which epoch e begins, for e < len(self._starts)

    def _cut_by_tokens(self, order: np.ndarray) -> list[np.ndarray]:
        """Consecutive examples of `order` (sorted by length) into batches of at most
        rows[bucket] examples, each filled up to that size with -1 (dummy rows)."""
        batches, current, width = [], [], 0
        for i in order:
            need = bucket_of(self.buckets, max(width, int(self.longest[i]), 1))
            if current and len(current) + 1 > self.rows[need]:
                batches.append(current)
                current, need = [], bucket_of(self.buckets, max(int(self.longest[i]), 1))
            current.append(i)
            width = need
        if current:
            batches.append(current)
        widths = [bucket_of(self.buckets, max(int(self.longest[b].max()), 1)) for b in batches]
        return [np.array(b + [-1] * (self.rows[w] - len(b))) for b, w in zip(batches, widths)]

    def plan(self, epoch: int) -> list[np.ndarray]:
        """Example indices (-1: a dummy row) of every global batch of an epoch."""
        if epoch in self._plans:
            return self._plans[epoch]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.split))
        if not self.tokens:
            order = order[: len(order) // self.global_batch * self.global_batch]
        batches = []
        for start in range(0, len(order), self.chunk):
            chunk = order[start : start + self.chunk]
            chunk = chunk[np.argsort(self.sort_key[chunk], kind="stable")]
            if self.tokens:
                batches += self._cut_by_tokens(chunk)
            else:
                batches += list(chunk.reshape(-1, self.global_batch))
        batches = [batches[i] for i in rng.permutation(len(batches))]
        self._plans = {epoch: batches}  # one epoch at a time is all a run reads
        return batches

    def _locate(self, step: int) -> tuple[int, int]:
        """(epoch, index in that epoch) of a step; epochs by tokens differ in length."""
        if not self.tokens:
            per_epoch = len(self.split) // self.global_batch
            return divmod(step, per_epoch)
        while self._starts[-1] <= step:  # the epochs up to this step, counted once each
            self._starts.append(self._starts[-1] + len(self.plan(len(self._starts) - 1)))
        epoch = int(np.searchsorted(self._starts, step, side="right")) - 1
        return epoch, step - self._starts[epoch]

    def __call__(self, step: int, _) -> dict[str, np.ndarray]:
        epoch, i = self._locate(step)
        examples = self.plan(epoch)[i]  # [global rows]: every host pads to the same bucket
        width = bucket_of(self.buckets, self.split.longest(examples))
        share = len(examples) // self.process_count
        mine = examples[self.process_index * share : (self.process_index + 1) * share]
        return self.split.batch(mine, width)


def train_iterator(
    data,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    bucket_window: int = 8,
    worker_count: int = 0,
    batch_type: str = "sentences",
    multiple: int = 1,
):
    """The infinite, resumable training batch iterator of this host.

    Args:
      data: a Data from load_data.
      batch_size: global batch size; by sentences, this host yields batch_size //
        process_count rows and examples that do not fill a global batch are dropped each
        epoch; by tokens, the most padded target positions a global batch may hold.
      seed: shuffling seed; the same seed gives the same batches.
      process_index: this host.
      process_count: number of hosts.
      bucket_window: number of global batches whose examples are sorted by length
        together; 1 turns the sorting off (each batch still takes the smallest shape bucket
        that holds it).
      worker_count: grain worker processes; 0 builds batches in this process.
      batch_type: 'sentences' or 'tokens' (BATCH_TYPES), what batch_size counts.
      multiple: by tokens, a global batch's rows are a multiple of this (the device count).

    Returns:
      A grain iterator over batch dicts with `get_state()` / `set_state()`; the
      state is {'next_index': step} for worker_count=0, so a restored iterator
      yields exactly the batches the original would have yielded next.
    """
    if batch_type not in BATCH_TYPES:
        raise DataError(f"unknown batch_type={batch_type!r}; choose one of {sorted(BATCH_TYPES)}")
    tokens = batch_size if batch_type == "tokens" else 0
    if tokens:  # the rows of each batch follow from its bucket
        _host_batch(process_count, process_count, process_index)  # checks process_index
        global_batch = 0
    else:
        global_batch = _host_batch(batch_size, process_count, process_index) * process_count
    batches = _TrainBatches(
        data.splits["train"],
        data.max_len,
        process_index,
        process_count,
        seed,
        bucket_window,
        data.buckets,
        global_batch=global_batch,
        tokens=tokens,
        multiple=multiple,
    )
    # repeat() makes the index run forever: it is the step, which the batch function turns
    # into (epoch, batch).
    ds = grain.MapDataset.source(range(1)).repeat().map_with_index(batches)
    ds = ds.to_iter_dataset(_READ_OPTIONS)
    if worker_count:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(ds)


class EvalBatches:
    """Finite, ordered, re-iterable batches of one split for one host.

    Global batch k holds examples [k*G, (k+1)*G) of the split (with several shape buckets,
    of the split sorted by length, so that short examples share small buckets); host h takes
    rows [h*B, (h+1)*B). Positions past the end are dummy rows (all zeros,
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
        buckets: Sequence[int] = (),
    ):
        self.split, self.max_len = split, max_len
        self.buckets = tuple(buckets) or (max_len,)
        global_batch = host_batch * process_count
        self.num_batches = -(-len(split) // global_batch)
        order = np.arange(len(split))
        if len(self.buckets) > 1:
            longest = np.maximum(split.inputs_len, split.targets_len)
            order = order[np.argsort(longest, kind="stable")]
        positions = np.arange(self.num_batches * global_batch)
        self.global_indices = np.where(
            positions < len(split), order[np.minimum(positions, len(split) - 1)], -1
        ).reshape(self.num_batches, global_batch)  # [batches, G]
        self.rows = slice(process_index * host_batch, (process_index + 1) * host_batch)
        self.indices = self.global_indices[:, self.rows]  # [num_batches, B]

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        width = bucket_of(self.buckets, self.split.longest(self.global_indices[k]))
        return self.split.batch(self.indices[k], width)

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
    return EvalBatches(
        data.splits[split], data.max_len, host_batch, process_index, process_count, data.buckets
    )
