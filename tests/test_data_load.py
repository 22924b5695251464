"""load_data: config defaults, vocabulary files shared by train/eval/predict, Data fields."""

import types

import pytest

from s2s_jax import data as s2s_data


def test_default_config_is_the_reverse_task():
    cfg = s2s_data.default_config()
    assert cfg.dataset == "reverse" and cfg.dataset in s2s_data.DATASETS
    assert cfg.tokenizer == "word" and cfg.on_long == "drop" and cfg.min_freq == 1
    assert cfg.synthetic.max_length <= cfg.max_len  # the default task drops nothing


def test_every_config_field_has_a_comment():
    import inspect

    source = inspect.getsource(s2s_data.default_config)
    for line in source.splitlines():
        if line.strip().startswith("c.") and "= ml_collections" not in line:
            assert "  # " in line, line


def _tiny(tmp_path, **synth):
    cfg = s2s_data.default_config()
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.synthetic.update(dict(num_train=40, num_valid=4, num_test=4), **synth)
    return cfg


def test_vocab_files_are_written_then_reused(tmp_path):
    work = str(tmp_path / "work")
    first = s2s_data.load_data(_tiny(tmp_path), work)
    src = (tmp_path / "work" / "vocab.src.txt").read_text(encoding="utf-8").splitlines()
    assert src == first.src_vocab.tokens and len(src) == 4 + 20
    # Eval/predict with other data (here: another seed) still use the training vocabulary.
    (tmp_path / "work" / "vocab.tgt.txt").write_text("\n".join(first.tgt_vocab.tokens[:8]) + "\n")
    second = s2s_data.load_data(_tiny(tmp_path, seed=9), work)
    assert second.src_vocab == first.src_vocab
    assert len(second.tgt_vocab) == 8 and second.tgt_vocab.tokens == first.tgt_vocab.tokens[:8]


def test_partial_config_takes_defaults(tmp_path):
    cfg = types.SimpleNamespace(
        dataset="copy",
        data_dir=tmp_path,  # a Path is fine too
        max_len=5,
        synthetic=types.SimpleNamespace(num_train=30, num_valid=3, num_test=3, max_length=5),
    )
    data = s2s_data.load_data(cfg, None)
    assert isinstance(data, s2s_data.Data) and data.max_len == 5
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 30, "valid": 3, "test": 3}


def test_default_data_dir_is_under_the_workdir(tmp_path):
    cfg = _tiny(tmp_path)
    cfg.data_dir = ""
    s2s_data.load_data(cfg, str(tmp_path / "work"))
    assert list((tmp_path / "work" / "tfds" / "s2s_synthetic").iterdir())


@pytest.mark.parametrize(
    "field, value, match", [("tokenizer", "bpe", "unknown tokenizer"), ("max_len", 0, "max_len=0")]
)
def test_bad_settings(tmp_path, field, value, match):
    cfg = _tiny(tmp_path)
    cfg[field] = value
    with pytest.raises(s2s_data.DataError, match=match):
        s2s_data.load_data(cfg, None)


def test_every_synthetic_example_dropped_is_an_error(tmp_path):
    cfg = _tiny(tmp_path, min_length=8)
    cfg.max_len = 4
    with pytest.raises(s2s_data.DataError, match="no train example left"):
        s2s_data.load_data(cfg, None)


@pytest.mark.parametrize(
    "path, reason", [("file", "it is a file"), ("file/sub", "Not a directory")]
)
def test_a_data_dir_that_cannot_hold_data_is_one_line(tmp_path, path, reason):
    (tmp_path / "file").write_text("")
    cfg = _tiny(tmp_path)
    cfg.data_dir = str(tmp_path / path)
    with pytest.raises(s2s_data.DataError) as err:
        s2s_data.load_data(cfg, None)
    assert str(err.value) == (
        f"data_dir={tmp_path / path} cannot be created ({reason}); give a "
        "directory path, or '' for <workdir>/tfds"
    )
