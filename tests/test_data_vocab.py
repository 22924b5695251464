"""Tokenizers and Vocab: specials, frequency limits, encode/decode, save/load."""

import pytest

from s2s_jax.data import DataError, Vocab, tokenize


def test_tokenize_word_and_char():
    assert tokenize("  a bb\tc \n", "word") == ["a", "bb", "c"]
    assert tokenize(" ab c ", "char") == ["a", "b", " ", "c"]
    assert tokenize("ä\nb", "char") == ["ä", " ", "b"]  # newline counts as a space


def test_tokenize_unknown_lists_choices():
    with pytest.raises(DataError, match=r"\['char', 'word'\]"):
        tokenize("a", "bpe")


def test_specials_come_first_with_fixed_ids():
    v = Vocab.build([["x", "y"]])
    assert v.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert len(v) == 6


def test_build_orders_by_count_then_alphabet():
    v = Vocab.build([["b", "a", "c", "c"], ["c", "b"]])
    assert v.tokens[4:] == ["c", "b", "a"]
    assert Vocab.build([["z", "y"]]).tokens[4:] == ["y", "z"]  # ties: alphabetical, not seen order


def test_min_freq_and_max_vocab():
    seqs = [["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]]
    assert Vocab.build(seqs, min_freq=2).tokens[4:] == ["a", "b", "c"]
    assert Vocab.build(seqs, max_size=6).tokens[4:] == ["a", "b"]
    assert len(Vocab.build(seqs, min_freq=3, max_size=100)) == 6
    with pytest.raises(DataError, match="max_vocab"):
        Vocab.build(seqs, max_size=4)


def test_encode_unknown_and_special_spellings_map_to_unk():
    v = Vocab.build([["a", "b"]])
    assert v.encode(["a", "zzz", "b", "<pad>", "<eos>"]) == [4, 3, 5, 3, 3]


def test_decode_stops_at_eos_and_skips_pad_bos():
    v = Vocab.build([["a", "b"]])
    assert v.decode([1, 4, 0, 3, 5, 2, 4, 4]) == ["a", "<unk>", "b"]
    assert v.decode([2, 4]) == []


def test_save_load_round_trip(tmp_path):
    v = Vocab.build([list("héllo wörld"), ["\r", "\x0b", "\u2028"]])  # odd whitespace is a token
    path = str(tmp_path / "vocab.txt")
    v.save(path)
    loaded = Vocab.load(path)
    assert loaded == v and loaded.tokens == v.tokens
    assert loaded.encode(list("wörld")) == v.encode(list("wörld"))


def test_load_rejects_a_file_without_specials(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match="vocab.txt.*delete it"):
        Vocab.load(str(path))
    with pytest.raises(DataError, match="missing.txt"):
        Vocab.load(str(tmp_path / "missing.txt"))
