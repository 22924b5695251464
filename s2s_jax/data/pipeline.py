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

import itertools
from typing import Iterator, Sequence

from absl import logging
import grain
import numpy as np

from s2s_jax.data.errors import DataError
from s2s_jax.data.text_split import TextSplit
from s2s_jax.data.vocab import tokenize, Vocab

ON_LONG = ("drop", "error")
BATCH_TYPES = ("sentences", "tokens")  # what train.batch_size counts
_AUTO_STEP = 8  # 'auto' buckets: multiples of 8 up to max_len
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


def shape_buckets(spec: str, max_len: int) -> tuple[int, ...]:
    """The padded lengths batches may take, from the `data.buckets` setting.

    Args:
      spec: '' (one bucket: max_len, every batch the same shape), 'auto' (multiples of 8 up
        to max_len) or increasing comma-separated lengths ending with max_len, e.g. '8,16,45'.
      max_len: the longest example either side may have.

    Returns:
      Strictly increasing lengths; the last is max_len.

    Raises:
      DataError: a list that does not parse, does not increase or does not end with max_len.
    """
    spec = str(spec).strip()
    if spec == "":
        return (max_len,)
    if spec == "auto":
        return tuple(range(_AUTO_STEP, max_len, _AUTO_STEP)) + (max_len,)
    fix = f"give increasing lengths ending with max_len, e.g. '8,16,{max_len}', or 'auto' or ''"
    try:
        values = tuple(int(x) for x in spec.split(","))
    except ValueError:
        raise DataError(f"data.buckets={spec!r} is not a comma-separated list of lengths; "
                        f"{fix}") from None
    if values[0] < 1 or any(b <= a for a, b in zip(values, values[1:])):
        raise DataError(f"data.buckets={spec!r} must be positive and strictly increasing; {fix}")
    if values[-1] != max_len:
        what = "cannot hold" if values[-1] < max_len else "is longer than"
        raise DataError(f"data.buckets={spec!r}: the largest bucket {values[-1]} {what} "
                        f"max_len={max_len}; end the list with {max_len}")
    return values


def check_token_budget(tokens: int, max_len: int, step: int) -> None:
    """Raises DataError when a batch of `tokens` padded target positions cannot hold `step`
    examples (one per device) of max_len; checked before anything is written."""
    if tokens // (max_len + 1) // step * step < 1:
        raise DataError(f"a batch of {tokens} tokens cannot hold {step} example(s) of "
                        f"max_len={max_len} (their {max_len + 1} target positions each on {step} "
                        f"device(s) and host(s)); raise batch_size to at least "
                        f"{(max_len + 1) * step} or lower max_len")


def bucket_of(buckets: Sequence[int], longest: int) -> int:
    """The smallest bucket that holds `longest` tokens."""
    return int(buckets[np.searchsorted(buckets, longest)])


def pad_batch(batch: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """`batch` with sources padded to `width` (targets to width + 1): a wider bucket."""
    pad = lambda x, w: np.pad(x, ((0, 0), (0, w - x.shape[1])))  # noqa: E731
    return dict(batch, inputs=pad(batch["inputs"], width), targets=pad(batch["targets"], width + 1))


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
        self.global_indices = np.where(positions < len(split),
                                       order[np.minimum(positions, len(split) - 1)], -1
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
    return EvalBatches(data.splits[split], data.max_len, host_batch, process_index, process_count,
                       data.buckets)


def encode_batch(
    src_vocab: Vocab, lines: Sequence[str], tokenizer: str, max_len: int,
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
