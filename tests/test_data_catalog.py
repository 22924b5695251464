"""'tfds:NAME/CONFIG' datasets: read offline from prepared data, a clear error without it."""

import pytest
import tensorflow_datasets as tfds

from s2s_jax import data as s2s_data
from s2s_jax.data import catalog


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if anything asks TFDS to build (and so download) a catalog dataset."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to build a catalog dataset")

    monkeypatch.setattr(tfds, "builder", refuse)


def _cfg(dataset, data_dir, **fields):
    cfg = s2s_data.default_config()
    cfg.update(dict(dataset=dataset, data_dir=str(data_dir)), **fields)
    return cfg


def test_parse_name():
    assert catalog.parse_name("tfds:wmt14_translate/de-en:1.0.0") == (
        "wmt14_translate",
        "de-en",
        "1.0.0",
    )
    assert catalog.parse_name("tfds:mnist") == ("mnist", None, None)
    with pytest.raises(s2s_data.DataError, match="tfds:NAME/CONFIG"):
        catalog.parse_name("tfds:")


def test_missing_data_says_how_to_prepare(tmp_path, no_network):
    with pytest.raises(s2s_data.DataError) as e:
        s2s_data.load_data(_cfg("tfds:wmt14_translate/de-en", tmp_path), None)
    msg = str(e.value)
    assert msg.startswith("tfds:wmt14_translate/de-en: no prepared data under ")
    assert str(tmp_path) in msg and "tfds_download=True" in msg
    assert (
        f"tfds build wmt14_translate/de-en --data_dir={tmp_path} --file_format=array_record" in msg
    )
    assert "\n" not in msg


@pytest.fixture
def prepared(tmp_path):
    """A prepared TFDS dataset on disk (our synthetic builder) and its config name."""
    cfg = _cfg("reverse", tmp_path)
    cfg.synthetic.update(num_train=30, num_valid=5, num_test=5)
    reference = s2s_data.load_data(cfg, None)
    (config,) = [p.name for p in (tmp_path / "s2s_synthetic").iterdir()]
    return reference, config


def test_reads_prepared_data_offline(tmp_path, prepared, no_network):
    reference, config = prepared
    for name in (
        f"tfds:s2s_synthetic/{config}",
        f"tfds:s2s_synthetic/{config}:1.0.0",
        "tfds:s2s_synthetic",
    ):
        data = s2s_data.load_data(_cfg(name, tmp_path), None)  # supervised keys by default
        assert data.src_vocab == reference.src_vocab
        for split in ("train", "valid", "test"):
            assert len(data.splits[split]) == len(reference.splits[split])
            for i in range(len(data.splits[split])):
                ex = data.splits[split][i]
                assert list(ex["targets"]) == list(ex["inputs"])[::-1]


def test_explicit_keys_and_char_tokenizer(tmp_path, prepared, no_network):
    _, config = prepared
    data = s2s_data.load_data(
        _cfg(
            f"tfds:s2s_synthetic/{config}",
            tmp_path,
            source_key="target",
            target_key="source",
            tokenizer="char",
            max_len=30,
        ),
        None,
    )
    assert " " in data.src_vocab.tokens  # char tokens include the separating spaces


def test_unknown_feature_lists_the_features(tmp_path, prepared, no_network):
    _, config = prepared
    with pytest.raises(
        s2s_data.DataError, match=r"no feature 'text' \(found \['source', 'target'\]"
    ):
        s2s_data.load_data(_cfg(f"tfds:s2s_synthetic/{config}", tmp_path, source_key="text"), None)
