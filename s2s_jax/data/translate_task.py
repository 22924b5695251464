"""The translation-like synthetic task: sentences shaped like real text, a lexicon to learn.

Sources are sentences of Zipf-distributed words; their lengths follow a log-normal clipped to
[min_length, max_length] (3..45 gives a mean near 13 and a long tail, as sentence-level
translation corpora have). The target is the source translated word by word through a fixed
random lexicon, with what makes translation more than a lookup:
- one-to-many and one-to-none: a word becomes one target word, two (a phrase), or nothing
  (a particle the target language drops), so lengths differ between the sides;
- local reordering: an adjective directly before a noun follows it in the target
  ("red car" -> "voiture rouge");
- agreement: that adjective takes the form of its noun's gender, which is only seen in the
  next source word, so a decoder needs the context of the source, not one word.
Every choice is a pure function of the parameters and the seed. With a small training split the
rarest words of the tail never reach it, as in real text: they are unknowns at test time.
"""

import bisect
import functools
import itertools
import math
import random
from typing import NamedTuple

# Word types and how often the lexicon assigns them.
_ADJ, _NOUN, _OTHER = "adj", "noun", "other"
_TYPES = ((_ADJ, 0.15), (_NOUN, 0.35), (_OTHER, 0.5))
_PHRASE = 0.2  # share of nouns and other words translated as two target words
_DROPPED = 0.1  # share of other words with no translation
_ZIPF = 1.1  # exponent of the word-rank distribution
_LENGTH_SIGMA = 0.5  # log-normal spread of sentence lengths
_MEDIAN_AT = 0.22  # median length, as a share of the way from min_length to max_length


class Entry(NamedTuple):
    """A source word's lexicon entry."""

    kind: str  # _ADJ, _NOUN or _OTHER
    gender: int  # nouns: 0 or 1, which the adjective before them agrees with
    forms: tuple  # target words; an adjective's two forms by gender, else its translation


class Lexicon(NamedTuple):
    words: tuple  # source words by frequency rank
    cumulative: tuple  # cumulative Zipf weights of the ranks, for drawing a word
    entries: dict  # source word -> Entry


@functools.cache
def lexicon(size: int, seed: int) -> Lexicon:
    """The fixed random lexicon of `size` source words (one per (size, seed))."""
    rng = random.Random(f"translate-lexicon/{size}/{seed}")
    words = tuple(f"w{i}" for i in range(size))
    cumulative = tuple(itertools.accumulate(1.0 / (r + 1) ** _ZIPF for r in range(size)))
    counter = itertools.count()
    new = lambda: f"t{next(counter)}"  # noqa: E731  a fresh target word
    entries = {}
    for word in words:
        kind = rng.choices([k for k, _ in _TYPES], [w for _, w in _TYPES])[0]
        if kind == _ADJ:
            forms = (new(), new())
        elif kind == _OTHER and rng.random() < _DROPPED:
            forms = ()
        else:
            forms = tuple(new() for _ in range(2 if rng.random() < _PHRASE else 1))
        entries[word] = Entry(kind, rng.randint(0, 1), forms)
    return Lexicon(words, cumulative, entries)


def sample_length(rng: random.Random, low: int, high: int) -> int:
    """A sentence length in [low, high]: log-normal around a median near low + 22% of the way."""
    median = low + _MEDIAN_AT * (high - low)
    for _ in range(100):
        length = round(math.exp(rng.gauss(math.log(max(median, 1.0)), _LENGTH_SIGMA)))
        if low <= length <= high:
            return length
    return min(max(round(median), low), high)


def sample(rng: random.Random, p) -> list[str]:
    """A source sentence of Zipf-distributed words whose translation is not empty (a sentence
    of dropped words only is redrawn); p: synthetic.SyntheticParams."""
    lex = lexicon(p.alphabet_size, p.seed)
    total = lex.cumulative[-1]
    for _ in range(1000):  # bounded: a lexicon of dropped words only has no other sentence
        length = sample_length(rng, p.min_length, p.max_length)
        source = [
            lex.words[bisect.bisect(lex.cumulative, rng.random() * total)] for _ in range(length)
        ]
        if translate(source, p):
            break
    return source


def translate(source: list[str], p) -> list[str]:
    """The target sentence of `source` under the lexicon of p (alphabet_size, seed)."""
    entries = lexicon(p.alphabet_size, p.seed).entries
    target = []
    i = 0
    while i < len(source):
        entry = entries[source[i]]
        following = entries[source[i + 1]] if i + 1 < len(source) else None
        if entry.kind == _ADJ and following is not None and following.kind == _NOUN:
            target += [*following.forms, entry.forms[following.gender]]  # noun, then adjective
            i += 2
            continue
        target += [entry.forms[0]] if entry.kind == _ADJ else list(entry.forms)
        i += 1
    return target
