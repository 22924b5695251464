"""Parallel text from local files: one `source<TAB>target` pair a line, UTF-8.

Files are parsed straight into memory rather than through a TFDS builder: they
are local, parsing is fast, and every error can name the file and line before
anything is written. Blank lines, a missing tab, more than one tab, an empty side
and invalid UTF-8 are errors, not silently skipped lines.
"""

import os

from s2s_jax.data.errors import DataError
from s2s_jax.data.text_split import TextSplit, carve
from s2s_jax.data.vocab import tokenize

_FORMAT = "write each line as 'source<TAB>target' in UTF-8"


def read_tsv(path: str, tokenizer: str) -> TextSplit:
    """Parses one file.

    Args:
      path: the file.
      tokenizer: 'word' or 'char'.

    Returns:
      The examples with their 1-based line numbers.

    Raises:
      DataError: on a missing or empty file or a bad line, naming file and line.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(
            f"{path}: cannot read ({e.strerror}); give an existing file, {_FORMAT}"
        ) from None
    if not data.strip():
        raise DataError(f"{path}: file is empty; {_FORMAT}")
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark is not part of line 1
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the final newline ends the last line, it does not start a new one
    sources, targets, lines = [], [], []
    for number, raw in enumerate(raw_lines, 1):
        where = f"{path}:{number}"
        try:
            line = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{where}: invalid UTF-8 ({e.reason} at byte {e.start}); convert the file "
                "to UTF-8, e.g. iconv -f latin1 -t utf-8"
            ) from None
        if not line.strip():
            raise DataError(f"{where}: blank line; remove it, {_FORMAT}")
        tabs = line.count("\t")
        if tabs != 1:
            problem = "no tab" if tabs == 0 else f"{tabs} tabs"
            raise DataError(f"{where}: {problem} between source and target; {_FORMAT}")
        source, target = (tokenize(side, tokenizer) for side in line.split("\t"))
        for side, tokens in (("source", source), ("target", target)):
            if not tokens:
                raise DataError(f"{where}: empty {side}; give both sides text or delete the line")
        sources.append(source)
        targets.append(target)
        lines.append(number)
    return TextSplit(sources, targets, path, lines)


def load(cfg, data_dir: str) -> dict[str, TextSplit]:
    """Reads cfg.train_file, cfg.valid_file (optional) and cfg.test_file.

    Args:
      cfg: data config; uses train_file, valid_file, test_file, tokenizer,
        valid_fraction.
      data_dir: unused (nothing is prepared for local files).

    Returns:
      {'train', 'valid', 'test'} -> TextSplit. Without valid_file, validation is
      cfg.valid_fraction of the training file, carved with a fixed seed.
    """
    del data_dir
    for field in ("train_file", "test_file"):
        if not getattr(cfg, field):
            raise DataError(f"dataset 'parallel_text' needs {field}=PATH; {_FORMAT}")
    splits = {
        "train": read_tsv(os.fspath(cfg.train_file), cfg.tokenizer),
        "test": read_tsv(os.fspath(cfg.test_file), cfg.tokenizer),
    }
    if cfg.valid_file:
        splits["valid"] = read_tsv(os.fspath(cfg.valid_file), cfg.tokenizer)
    else:
        splits["train"], splits["valid"] = carve(splits["train"], cfg.valid_fraction)
    return splits
