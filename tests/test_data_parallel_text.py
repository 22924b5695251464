"""parallel_text: parsing local TSV files, carving validation, and every bad input."""

import pytest

from s2s_jax import data as s2s_data
from s2s_jax.data import parallel_text

GOOD = "a b c\tc b a\nd e\te d\nf\tf\n"


def _cfg(tmp_path, train=GOOD, test=GOOD, valid=None, **fields):
    cfg = s2s_data.default_config()
    cfg.dataset = "parallel_text"
    for name, text in (("train", train), ("test", test), ("valid", valid)):
        if text is not None:
            path = tmp_path / f"{name}.tsv"
            path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
            cfg[f"{name}_file"] = str(path)
    cfg.update(fields)
    return cfg


def _decoded(data, split):
    s = data.splits[split]
    return [
        (
            " ".join(data.src_vocab.decode(s[i]["inputs"])),
            " ".join(data.tgt_vocab.decode(s[i]["targets"])),
        )
        for i in range(len(s))
    ]


def test_word_pairs_in_file_order(tmp_path):
    data = s2s_data.load_data(_cfg(tmp_path, valid="d e\te d\n"), str(tmp_path / "work"))
    assert _decoded(data, "test") == [("a b c", "c b a"), ("d e", "e d"), ("f", "f")]
    assert _decoded(data, "valid") == [("d e", "e d")]
    assert (tmp_path / "work" / "vocab.src.txt").exists()


def test_char_tokenizer_crlf_and_bom(tmp_path):
    text = "\ufeffab c\tx\r\nü\tyz\r\n".encode("utf-8")
    split = parallel_text.read_tsv(str(_cfg(tmp_path, train=text).train_file), "char")
    assert split.sources == [["a", "b", " ", "c"], ["ü"]]
    assert split.targets == [["x"], ["y", "z"]]
    assert split.lines == [1, 2]


def test_valid_is_carved_from_train_with_a_fixed_seed(tmp_path):
    train = "".join(f"w{i} x\tx w{i}\n" for i in range(40))
    cfg = s2s_data.datasets._with_defaults(_cfg(tmp_path, train=train, valid_fraction=0.25))
    first, second = parallel_text.load(cfg, None), parallel_text.load(cfg, None)
    assert first["valid"].sources == second["valid"].sources
    assert len(first["valid"].sources) == 10 and len(first["train"].sources) == 30
    assert sorted(first["train"].lines + first["valid"].lines) == list(range(1, 41))
    assert first["valid"].lines != list(range(31, 41))  # random, not the tail
    # The vocabulary comes from the carved train part only.
    data = s2s_data.load_data(cfg, None)
    valid_words = {s[0] for s in first["valid"].sources}
    assert not valid_words & set(data.src_vocab.tokens)
    assert len(data.src_vocab) == 4 + 30 + 1


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("a\tb\nno tab here\n", 2, "no tab"),
        ("a\tb\nc\td\te\n", 2, "2 tabs"),
        ("a\tb\n \tb\n", 2, "empty source"),
        ("a\tb\nc\td\na\t  \n", 3, "empty target"),
        ("a\tb\n\nc\td\n", 2, "blank line"),
        (b"a\tb\nc\td\n\xff\xfe\tx\n", 3, "invalid UTF-8"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, text, line, message):
    cfg = _cfg(tmp_path, train=text)
    with pytest.raises(s2s_data.DataError) as e:
        s2s_data.load_data(cfg, None)
    msg = str(e.value)
    assert f"{cfg.train_file}:{line}: " in msg and message in msg
    assert "\n" not in msg and ("source<TAB>target" in msg or "UTF-8" in msg or "delete" in msg)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_file(tmp_path, text):
    cfg = _cfg(tmp_path, test=text)
    with pytest.raises(s2s_data.DataError, match=f"{cfg.test_file}: file is empty; write"):
        s2s_data.load_data(cfg, None)


def test_missing_file(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.valid_file = str(tmp_path / "nope.tsv")
    with pytest.raises(s2s_data.DataError, match=r"nope.tsv: cannot read \(No such file"):
        s2s_data.load_data(cfg, None)


def test_unset_train_file(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.train_file = ""
    with pytest.raises(s2s_data.DataError, match="needs train_file=PATH"):
        s2s_data.load_data(cfg, None)


def test_unknown_dataset_lists_known_names_sorted():
    cfg = s2s_data.default_config()
    cfg.dataset = "revrese"
    with pytest.raises(s2s_data.DataError) as e:
        s2s_data.load_data(cfg, None)
    assert str(sorted(s2s_data.DATASETS)) in str(e.value)
    assert "'revrese'" in str(e.value) and "tfds:NAME/CONFIG" in str(e.value)


def test_long_examples_dropped_with_count(tmp_path, caplog):
    train = "a b c\tc b a\n" + "a " * 9 + "\tx\nx\t" + "y " * 9 + "\nd\td\n"
    data = s2s_data.load_data(_cfg(tmp_path, train=train, valid=GOOD, max_len=4), None)
    assert len(data.splits["train"]) == 2
    assert "train: dropped 2 of 4 examples longer than max_len=4" in caplog.text


def test_long_examples_error_names_line(tmp_path):
    train = "a b c\tc b a\nd\td\n" + "a " * 9 + "\tx\n"
    cfg = _cfg(tmp_path, train=train, valid=GOOD, max_len=4, on_long="error")
    with pytest.raises(s2s_data.DataError, match=f"{cfg.train_file}:3: 9 source .*on_long='drop'"):
        s2s_data.load_data(cfg, None)


def test_unknown_on_long(tmp_path):
    with pytest.raises(s2s_data.DataError, match="on_long='skip'"):
        s2s_data.load_data(_cfg(tmp_path, on_long="skip"), None)
