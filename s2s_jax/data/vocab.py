"""Tokenizers and the token <-> id vocabulary shared by training, eval and predict."""

import collections
import os
from collections.abc import Iterable, Sequence

from s2s_jax.data.errors import DataError

# Order fixes the ids: pad=0, bos=1, eos=2, unk=3. The model and losses rely on them.
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
TOKENIZERS = ("char", "word")


def tokenize(text: str, tokenizer: str) -> list[str]:
    """Splits text into tokens.

    Args:
      text: one side of an example.
      tokenizer: 'word' (whitespace-separated words) or 'char' (every character,
        spaces included, after stripping the ends; a newline counts as a space so
        that the vocabulary file stays one token a line).

    Returns:
      The tokens, possibly empty.
    """
    if tokenizer == "word":
        return text.split()
    if tokenizer == "char":
        return list(text.strip().replace("\n", " "))
    raise DataError(f"unknown tokenizer {tokenizer!r}; choose one of {sorted(TOKENIZERS)}")


class Vocab:
    """A list of tokens whose first four entries are the specials.

    Ids index the list. Text that happens to spell a special ('<pad>', ...) encodes
    to unk, so a pad or eos id never appears inside a real sequence.
    """

    pad_id = 0
    bos_id = 1
    eos_id = 2
    unk_id = 3

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"a vocabulary must start with {list(SPECIALS)}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            raise DataError("a vocabulary must not repeat a token")
        if any(not t or "\n" in t for t in tokens):
            raise DataError("a vocabulary token must be non-empty and contain no newline")
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens) if i >= len(SPECIALS)}

    @classmethod
    def build(
        cls, sequences: Iterable[Sequence[str]], min_freq: int = 1, max_size: int = 0
    ) -> "Vocab":
        """Builds a vocabulary from token sequences (the training split).

        Args:
          sequences: token lists.
          min_freq: keep tokens seen at least this many times.
          max_size: total size including the 4 specials; 0 means unlimited.

        Returns:
          Specials, then tokens by decreasing count, ties broken alphabetically so
          the result does not depend on example order.
        """
        if max_size and max_size <= len(SPECIALS):
            raise DataError(
                f"max_vocab={max_size} leaves no room for tokens; "
                f"use 0 (unlimited) or more than {len(SPECIALS)}"
            )
        counts = collections.Counter()
        for seq in sequences:
            counts.update(seq)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
            key=lambda t: (-counts[t], t),
        )
        if max_size:
            kept = kept[: max_size - len(SPECIALS)]
        return cls(SPECIALS + tuple(kept))

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Maps tokens to ids; unknown tokens map to unk_id. Adds no bos/eos."""
        return [self._ids.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Maps ids back to tokens, stopping at the first eos and skipping pad/bos."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(self.tokens[i])
        return out

    def save(self, path: str) -> None:
        """Writes one token a line (UTF-8), atomically so a reader never sees half a file."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(self.tokens) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "Vocab":
        """Reads a file written by save()."""
        try:
            with open(path, encoding="utf-8", newline="") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(
                f"{path}: cannot read vocabulary ({e}); delete it to rebuild "
                "it from the training data"
            ) from None
        # Split on '\n' only: with the char tokenizer, other line breaks are tokens.
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        try:
            return cls(tokens)
        except DataError as e:
            raise DataError(
                f"{path}: {e}; delete it to rebuild it from the training data"
            ) from None
