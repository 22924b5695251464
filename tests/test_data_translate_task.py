"""The translation-like task: real-text length shapes, Zipf words, a lexicon with phrases,
dropped words, adjective-noun reordering and agreement."""

import collections
import random

import numpy as np

from s2s_jax.data import synthetic, translate_task

P = synthetic.SyntheticParams(
    num_train=3000, num_valid=10, num_test=10, min_length=3, max_length=45, alphabet_size=4000
)


def _pairs():
    return [(s.split(), t.split()) for s, t in synthetic.generate("translate", P)["train"]]


def test_lengths_look_like_sentence_level_text():
    lengths = np.array([len(s) for s, _ in _pairs()])
    assert lengths.min() >= 3 and lengths.max() <= 45
    assert 11.0 <= lengths.mean() <= 15.5  # a translation corpus: mean near 13
    assert np.mean(lengths > 30) > 0.005  # with a long tail
    assert np.mean(lengths <= 8) > 0.1


def test_words_are_zipf_distributed():
    counts = collections.Counter(w for s, _ in _pairs() for w in s)
    ranked = [counts[f"w{r}"] for r in (0, 9, 99)]
    assert ranked[0] > 5 * ranked[1] > 0 and ranked[1] > 5 * ranked[2]
    assert len(counts) < P.alphabet_size  # rare words never occur: unknowns at test time


def test_target_lengths_differ_from_source_lengths():
    pairs = _pairs()
    differ = np.mean([len(s) != len(t) for s, t in pairs])
    assert differ > 0.3
    ratio = sum(len(t) for _, t in pairs) / sum(len(s) for s, _ in pairs)
    assert 0.9 < ratio < 1.3


def _words(kind, **want):
    lex = translate_task.lexicon(P.alphabet_size, P.seed)
    return [
        w
        for w in lex.words
        if lex.entries[w].kind == kind
        and all(getattr(lex.entries[w], k) == v for k, v in want.items())
    ]


def test_adjective_before_noun_is_reordered_and_agrees_with_its_gender():
    lex = translate_task.lexicon(P.alphabet_size, P.seed).entries
    adj = _words("adj")[0]
    for gender in (0, 1):
        noun = _words("noun", gender=gender)[0]
        target = translate_task.translate([adj, noun], P)
        assert target == [*lex[noun].forms, lex[adj].forms[gender]]
    other = next(w for w in _words("other") if lex[w].forms)
    assert translate_task.translate([adj, other], P) == [lex[adj].forms[0], *lex[other].forms]


def test_phrases_and_dropped_words_exist():
    lex = translate_task.lexicon(P.alphabet_size, P.seed).entries
    sizes = collections.Counter(len(e.forms) for e in lex.values() if e.kind != "adj")
    assert sizes[0] > 0 and sizes[1] > sizes[2] > 0
    dropped = next(w for w in _words("other") if not lex[w].forms)
    assert translate_task.translate([dropped], P) == []


def test_a_function_of_parameters_and_seed():
    assert synthetic.generate("translate", P) == synthetic.generate("translate", P)
    other = P._replace(seed=1)
    assert translate_task.lexicon(4000, 0) != translate_task.lexicon(4000, 1)
    assert synthetic.generate("translate", P) != synthetic.generate("translate", other)


def test_sampled_lengths_stay_in_range_for_narrow_ranges():
    rng = random.Random(0)
    assert {translate_task.sample_length(rng, 5, 5) for _ in range(20)} == {5}
    assert {translate_task.sample_length(rng, 1, 2) for _ in range(200)} == {1, 2}
