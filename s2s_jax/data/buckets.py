"""Shape buckets: the few padded lengths a batch may take, so jit compiles once per bucket.

A batch takes the smallest bucket (`data.buckets`, ending with max_len) that holds every
example of the global batch on both sides; the decoder scan then runs the bucket's T steps.
"""

from collections.abc import Sequence

import numpy as np

from s2s_jax.data.errors import DataError

_AUTO_STEP = 8  # 'auto' buckets: multiples of 8 up to max_len


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
        raise DataError(
            f"data.buckets={spec!r} is not a comma-separated list of lengths; {fix}"
        ) from None
    if values[0] < 1 or any(b <= a for a, b in zip(values, values[1:])):
        raise DataError(f"data.buckets={spec!r} must be positive and strictly increasing; {fix}")
    if values[-1] != max_len:
        what = "cannot hold" if values[-1] < max_len else "is longer than"
        raise DataError(
            f"data.buckets={spec!r}: the largest bucket {values[-1]} {what} "
            f"max_len={max_len}; end the list with {max_len}"
        )
    return values


def check_token_budget(tokens: int, max_len: int, step: int) -> None:
    """Raises DataError when a batch of `tokens` padded target positions cannot hold `step`
    examples (one per device) of max_len; checked before anything is written."""
    if tokens // (max_len + 1) // step * step < 1:
        raise DataError(
            f"a batch of {tokens} tokens cannot hold {step} example(s) of "
            f"max_len={max_len} (their {max_len + 1} target positions each on {step} "
            f"device(s) and host(s)); raise batch_size to at least "
            f"{(max_len + 1) * step} or lower max_len"
        )


def bucket_of(buckets: Sequence[int], longest: int) -> int:
    """The smallest bucket that holds `longest` tokens."""
    return int(buckets[np.searchsorted(buckets, longest)])


def pad_batch(batch: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """`batch` with sources padded to `width` (targets to width + 1): a wider bucket."""
    pad = lambda x, w: np.pad(x, ((0, 0), (0, w - x.shape[1])))  # noqa: E731
    return dict(batch, inputs=pad(batch["inputs"], width), targets=pad(batch["targets"], width + 1))
