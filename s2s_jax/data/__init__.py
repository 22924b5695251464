"""Data for s2s_jax: TFDS builders, vocabularies and grain batch pipelines.

  datasets.py        DATASETS: the names --dataset takes, and load_data
  synthetic.py       the embedded synthetic tasks (TASKS) as TFDS builders
  translate_task.py  the embedded translation-like task (Zipf words, lexicon, reordering)
  parallel_text.py   TSV files of source/target pairs
  catalog.py         `tfds:NAME/CONFIG` catalog datasets
  text_split.py      a split read into token lists
  vocab.py           vocabularies and tokenizers
  encoding.py        splits encoded as flat id arrays (EncodedSplit); raw lines for predict
  buckets.py         shape buckets: the few padded lengths a batch may take
  pipeline.py        training and evaluation batches (sentence or token budgets) with grain
  errors.py          DataError: bad data as one line naming the fix

Typical use:
  data = load_data(config.data, workdir)
  batches = train_iterator(data, batch_size=64, seed=0)   # infinite, resumable
  for batch in eval_batches(data, 'valid', batch_size=64): ...
"""

from s2s_jax.data.buckets import check_token_budget, pad_batch, shape_buckets
from s2s_jax.data.datasets import DATASETS, Data, Dataset, default_config, load_data
from s2s_jax.data.encoding import EncodedSplit, encode_batch
from s2s_jax.data.errors import DataError
from s2s_jax.data.pipeline import BATCH_TYPES, eval_batches, train_iterator
from s2s_jax.data.vocab import Vocab, tokenize

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
