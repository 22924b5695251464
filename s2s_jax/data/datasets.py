"""The dataset registry, the data config and load_data: from a config to encoded splits."""

import functools
import os
import tempfile
from collections.abc import Callable
from typing import NamedTuple

import ml_collections
from absl import logging

from s2s_jax.data import catalog, parallel_text, synthetic
from s2s_jax.data.buckets import shape_buckets
from s2s_jax.data.encoding import EncodedSplit, encode_split
from s2s_jax.data.errors import DataError
from s2s_jax.data.text_split import TextSplit
from s2s_jax.data.vocab import TOKENIZERS, Vocab

SRC_VOCAB_FILE = "vocab.src.txt"
TGT_VOCAB_FILE = "vocab.tgt.txt"


class Dataset(NamedTuple):
    """A registry entry: load(cfg, data_dir) -> {'train','valid','test'} -> TextSplit."""

    load: Callable[[ml_collections.ConfigDict, str], dict[str, TextSplit]]
    description: str


DATASETS = {
    "parallel_text": Dataset(parallel_text.load, "local source<TAB>target files"),
    **{
        task: Dataset(functools.partial(synthetic.load, task), entry.description)
        for task, entry in synthetic.TASKS.items()
    },
}
# 'tfds:NAME/CONFIG' names a TFDS catalog dataset; see catalog.py.


def default_config() -> ml_collections.ConfigDict:
    """The data settings with their defaults."""
    c = ml_collections.ConfigDict()
    c.dataset = "reverse"  # a key of DATASETS, or 'tfds:NAME/CONFIG' for a TFDS catalog dataset
    c.data_dir = ""  # where TFDS prepares/finds data; '' = <workdir>/tfds (a temp dir without one)
    c.train_file = ""  # parallel_text: training pairs, one 'source<TAB>target' a line, UTF-8
    c.valid_file = ""  # parallel_text: validation pairs; '' = carve valid_fraction of train
    c.test_file = ""  # parallel_text: test pairs (required)
    c.valid_fraction = 0.05  # share of train carved (fixed seed) when there is no validation split
    c.tokenizer = "word"  # 'word' (whitespace) or 'char'; synthetic tasks need 'word'
    c.max_len = 16  # S: most tokens per side; the target gets T = max_len + 1 slots (eos)
    c.buckets = ""  # batch shapes: '' = [B, max_len] always; 'auto' = multiples of 8 up to
    # max_len; or increasing lengths ending with max_len ('8,16,32,64'): one compile each
    c.on_long = "drop"  # longer examples: 'drop' (counted warning) or 'error' (DataError)
    c.min_freq = 1  # vocabulary keeps tokens seen at least this often in train
    c.max_vocab = 0  # vocabulary size including the 4 specials; 0 = unlimited
    c.source_key = ""  # tfds: feature holding the source text ('a/b' nests); '' = supervised key
    c.target_key = ""  # tfds: feature holding the target text; '' = supervised key
    c.tfds_download = False  # tfds: download and prepare a missing dataset (needs network)
    c.synthetic = ml_collections.ConfigDict()
    c.synthetic.num_train = 20000  # training examples
    c.synthetic.num_valid = 500  # validation examples (sources never in test)
    c.synthetic.num_test = 500  # test examples (sources never in valid or train when avoidable)
    c.synthetic.min_length = 3  # fewest source tokens (addition: at least 3, 'd + d')
    c.synthetic.max_length = 12  # most source tokens; keep <= max_len or examples are dropped
    c.synthetic.alphabet_size = 20  # symbols 'a'..'t' for reverse/copy/sort (addition: digits;
    # translate: source words, e.g. 4000 with lengths 3..45 for real-text shapes)
    c.synthetic.seed = 0  # generation seed; part of the prepared dataset's name
    return c


class Data(NamedTuple):
    """Everything the model and the train loop need from the data.

    Attributes:
      src_vocab: source vocabulary (V_src = len(src_vocab)).
      tgt_vocab: target vocabulary.
      splits: 'train', 'valid', 'test' -> EncodedSplit (random access, len()).
      max_len: the longest side an example may have; targets have one more position.
      buckets: the batches' shape buckets (buckets.shape_buckets), ending with max_len.
    """

    src_vocab: Vocab
    tgt_vocab: Vocab
    splits: dict[str, EncodedSplit]
    max_len: int
    buckets: tuple = ()


def _with_defaults(cfg) -> ml_collections.ConfigDict:
    """The data fields of cfg over the defaults, so partial configs work.

    Built from plain dicts: a ConfigDict field would reject a value of another
    type (a pathlib.Path for a str, say) that the loaders accept.
    """
    merged = default_config().to_dict()
    given = getattr(cfg, "synthetic", None)
    for sub in merged["synthetic"]:
        if getattr(given, sub, None) is not None:
            merged["synthetic"][sub] = getattr(given, sub)
    for field in merged:
        if field != "synthetic" and getattr(cfg, field, None) is not None:
            merged[field] = getattr(cfg, field)
    return ml_collections.ConfigDict(merged)


def _vocabs(train: TextSplit, cfg, workdir: str | None) -> tuple[Vocab, Vocab]:
    """Loads the workdir's vocabularies, or builds them from train and saves them there."""
    paths = [os.path.join(workdir, f) for f in (SRC_VOCAB_FILE, TGT_VOCAB_FILE)] if workdir else []
    if paths and all(os.path.exists(p) for p in paths):
        logging.info("reusing vocabularies %s", paths)
        return Vocab.load(paths[0]), Vocab.load(paths[1])
    vocabs = (
        Vocab.build(train.sources, cfg.min_freq, cfg.max_vocab),
        Vocab.build(train.targets, cfg.min_freq, cfg.max_vocab),
    )
    if paths:
        os.makedirs(workdir, exist_ok=True)
        for vocab, path in zip(vocabs, paths):
            vocab.save(path)
    return vocabs


def load_data(cfg, workdir: str | None) -> Data:
    """Loads, tokenizes and encodes a dataset, preparing it first if needed.

    Args:
      cfg: data settings (see default_config; missing fields take the defaults).
      workdir: run directory holding the vocabularies (and by default the TFDS
        data); vocabularies already there are reused, so eval and predict see the
        training ids. None keeps nothing.

    Returns:
      A Data.

    Raises:
      DataError: for any bad data or setting, with a one-line message.
    """
    cfg = _with_defaults(cfg)
    if cfg.tokenizer not in TOKENIZERS:
        raise DataError(f"unknown tokenizer {cfg.tokenizer!r}; choose one of {sorted(TOKENIZERS)}")
    if cfg.max_len < 1:
        raise DataError(f"max_len={cfg.max_len} must be at least 1")
    buckets = shape_buckets(cfg.buckets, int(cfg.max_len))  # bad lists fail before any work
    data_dir = os.fspath(cfg.data_dir) or (
        os.path.join(workdir, "tfds") if workdir else tempfile.mkdtemp(prefix="s2s_tfds_")
    )
    try:  # here, not deep inside a builder: a file or an unwritable path is one line
        if os.path.isfile(data_dir):
            raise NotADirectoryError(0, "it is a file")
        os.makedirs(data_dir, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"data_dir={data_dir} cannot be created ({err.strerror or err}); give a "
            f"directory path, or '' for <workdir>/tfds"
        ) from None
    if cfg.dataset.startswith(catalog.PREFIX):
        texts = catalog.load(cfg.dataset, cfg, data_dir)
    elif cfg.dataset in DATASETS:
        texts = DATASETS[cfg.dataset].load(cfg, data_dir)
    else:
        raise DataError(
            f"unknown dataset {cfg.dataset!r}; choose one of {sorted(DATASETS)} "
            f"or 'tfds:NAME/CONFIG'"
        )
    src_vocab, tgt_vocab = _vocabs(texts["train"], cfg, workdir)
    splits = {
        name: encode_split(text, src_vocab, tgt_vocab, cfg.max_len, cfg.on_long, name)
        for name, text in texts.items()
    }
    logging.info(
        "data %s: %s examples, vocab %d/%d",
        cfg.dataset,
        {k: len(v) for k, v in splits.items()},
        len(src_vocab),
        len(tgt_vocab),
    )
    return Data(src_vocab, tgt_vocab, splits, int(cfg.max_len), buckets)
