"""Data for s2s_jax: TFDS builders, vocabularies and grain batch pipelines.

Typical use:
  data = load_data(config.data, workdir)
  batches = train_iterator(data, batch_size=64, seed=0)   # infinite, resumable
  for batch in eval_batches(data, 'valid', batch_size=64): ...
"""

from s2s_jax.data.datasets import Data, Dataset, DATASETS, default_config, load_data
from s2s_jax.data.errors import DataError
from s2s_jax.data.pipeline import (BATCH_TYPES, check_token_budget, encode_batch, EncodedSplit, eval_batches, pad_batch,
                                   shape_buckets, train_iterator)
from s2s_jax.data.vocab import tokenize, Vocab

__all__ = [
    "BATCH_TYPES",
    "check_token_budget",
    "Data",
    "DataError",
    "Dataset",
    "DATASETS",
    "default_config",
    "encode_batch",
    "EncodedSplit",
    "eval_batches",
    "load_data",
    "tokenize",
    "pad_batch",
    "shape_buckets",
    "train_iterator",
    "Vocab",
]
