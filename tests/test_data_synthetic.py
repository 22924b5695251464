"""Synthetic tasks: pure generation, the TFDS builder round trip, caching, config errors."""

import os
import threading

import pytest

from s2s_jax import data as s2s_data
from s2s_jax.data import synthetic, translate_task


def _cfg(task, data_dir, **synth):
    cfg = s2s_data.default_config()
    cfg.dataset = task
    cfg.data_dir = str(data_dir)
    cfg.synthetic.update(dict(num_train=40, num_valid=6, num_test=6, seed=1), **synth)
    return cfg


def _expected(task, source, seed=1):
    if task == "translate":
        return translate_task.translate(source, synthetic.SyntheticParams(seed=seed))
    if task == "reverse":
        return source[::-1]
    if task == "copy":
        return source
    if task == "sort":
        return sorted(source)
    a, b = "".join(source).split("+")
    return list(str(int(a) + int(b)))


def test_registry_has_the_tasks():
    assert {"reverse", "copy", "sort", "addition", "parallel_text"} <= set(s2s_data.DATASETS)
    assert sorted(synthetic.TASKS) == ["addition", "copy", "reverse", "sort", "translate"]
    assert set(synthetic.TASKS) <= set(s2s_data.DATASETS)  # every task is a dataset


@pytest.mark.parametrize("task", sorted(synthetic.TASKS))
def test_builder_round_trip(task, tmp_path):
    """Prepared through TFDS (array_record), read back, decoded: targets are the task's answer."""
    cfg = _cfg(task, tmp_path / "tfds")
    cfg.max_len = 24 if task == "translate" else cfg.max_len  # a phrase per word: 2 x 12
    data = s2s_data.load_data(cfg, str(tmp_path))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 40, "valid": 6, "test": 6}
    assert os.path.exists(tmp_path / "vocab.src.txt") and os.path.exists(tmp_path / "vocab.tgt.txt")
    assert list((tmp_path / "tfds" / "s2s_synthetic").glob("*/1.0.0/*.array_record*"))
    for split in data.splits.values():
        for i in range(len(split)):
            ex = split[i]
            source = data.src_vocab.decode(ex["inputs"])
            assert 3 <= len(source) <= 12
            if task == "translate" and "<unk>" in source:
                continue  # a word of the Zipf tail that the 40 training sentences never used
            assert "<unk>" not in source
            assert data.tgt_vocab.decode(ex["targets"]) == _expected(task, source)


def test_generation_is_deterministic_and_seeded():
    p = synthetic.SyntheticParams(num_train=50, num_valid=5, num_test=5)
    assert synthetic.generate("reverse", p) == synthetic.generate("reverse", p)
    assert synthetic.generate("reverse", p) != synthetic.generate("reverse", p._replace(seed=1))


def test_lengths_alphabet_and_held_out_sources():
    p = synthetic.SyntheticParams(
        num_train=300, num_valid=30, num_test=30, min_length=2, max_length=5, alphabet_size=4
    )
    splits = synthetic.generate("copy", p)
    sources = {k: [s for s, _ in v] for k, v in splits.items()}
    for split in sources.values():
        for s in split:
            assert 2 <= len(s.split()) <= 5 and set(s.split()) <= set("abcd")
    assert not set(sources["test"]) & (set(sources["validation"]) | set(sources["train"]))
    assert not set(sources["validation"]) & set(sources["train"])


def test_addition_has_no_leading_zeros_and_right_sums():
    p = synthetic.SyntheticParams(num_train=200, num_valid=1, num_test=1, max_length=9)
    for source, target in synthetic.generate("addition", p)["train"]:
        a, b = source.replace(" ", "").split("+")
        assert all(len(x) == 1 or x[0] != "0" for x in (a, b))
        assert target.replace(" ", "") == str(int(a) + int(b))
        assert 3 <= len(source.split()) <= 9


def test_sort_uses_alphabet_order_beyond_26_symbols():
    p = synthetic.SyntheticParams(num_train=50, num_valid=1, num_test=1, alphabet_size=40)
    for source, target in synthetic.generate("sort", p)["train"]:
        ranks = [int(t[1:]) for t in target.split()]
        assert ranks == sorted(int(t[1:]) for t in source.split())


def test_prepared_once_then_reused_and_new_params_prepare_anew(tmp_path, monkeypatch):
    s2s_data.load_data(_cfg("reverse", tmp_path), None)

    def fail(*args):
        raise AssertionError("regenerated a prepared dataset")

    monkeypatch.setattr(synthetic, "generate", fail)
    s2s_data.load_data(_cfg("reverse", tmp_path), None)  # reuses the files
    with pytest.raises(AssertionError, match="regenerated"):
        s2s_data.load_data(
            _cfg("reverse", tmp_path, seed=2), None
        )  # a changed parameter is new data
    assert len(list((tmp_path / "s2s_synthetic").iterdir())) == 2


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(min_length=0), "min_length"),
        (dict(min_length=5, max_length=4), "min_length"),
        (dict(num_valid=0), "num_valid"),
    ],
)
def test_bad_parameters(change, match, tmp_path):
    with pytest.raises(s2s_data.DataError, match=match):
        s2s_data.load_data(_cfg("copy", tmp_path, **change), None)


def test_addition_needs_room_for_two_numbers(tmp_path):
    with pytest.raises(s2s_data.DataError, match="3 <= min_length"):
        s2s_data.load_data(_cfg("addition", tmp_path, max_length=2), None)


def test_char_tokenizer_is_rejected(tmp_path):
    cfg = _cfg("reverse", tmp_path)
    cfg.tokenizer = "char"
    with pytest.raises(s2s_data.DataError, match="tokenizer='word'"):
        s2s_data.load_data(cfg, None)


def test_concurrent_prepares_share_one_dataset(tmp_path):
    """Two hosts preparing into one data_dir: one writes, the other waits and reuses."""
    p = synthetic.SyntheticParams(num_train=5000, num_valid=5, num_test=5)
    barrier, errors = threading.Barrier(2), []

    def prepare():
        barrier.wait()
        try:
            builder = synthetic.prepare("reverse", p, str(tmp_path))
            assert len(builder.as_data_source()["train"]) == 5000
        except Exception as e:  # collected: an exception in a thread would not fail the test
            errors.append(e)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
