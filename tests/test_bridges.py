import dataclasses
import itertools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.models import attention, bridges, model
from s2s_jax.training import losses

from conftest import make_batch

ENC_HIDDEN, DEC_HIDDEN = 4, 40  # unequal; the decoder is wide enough for `concat` everywhere
# Every bridge, and the config files' `attention` (attention over a dense initial state).
MATRIX = list(
    itertools.product(
        model.BRIDGE_SPELLINGS, ["lstm", "gru"], ["lstm", "gru"], [False, True], [1, 2], [1, 2]
    )
)


def _config(
    bridge,
    enc_cell="lstm",
    dec_cell="lstm",
    bidi=False,
    enc_layers=1,
    dec_layers=1,
    dec_hidden=DEC_HIDDEN,
    **kw,
):
    """A ModelConfig from the config files' spelling (`bridge` may be "attention")."""
    return model.ModelConfig.from_experiment(
        src_vocab=11,
        tgt_vocab=13,
        emb=6,
        hidden=ENC_HIDDEN,
        cell=enc_cell,
        layers=enc_layers,
        bidirectional=bidi,
        decoder_cell=dec_cell,
        decoder_hidden=dec_hidden,
        decoder_layers=dec_layers,
        bridge=bridge,
        attention_type="general",
        **kw,
    )


@pytest.mark.parametrize("bridge,enc_cell,dec_cell,bidi,enc_layers,dec_layers", MATRIX)
def test_every_bridge_gives_the_decoder_state_structure(
    bridge, enc_cell, dec_cell, bidi, enc_layers, dec_layers
):
    cfg = _config(bridge, enc_cell, dec_cell, bidi, enc_layers, dec_layers)
    if bridge == "copy":  # the sizes differ, so copy must refuse and say what to do instead
        with pytest.raises(ValueError, match=r"encoder is .* decoder is .*--bridge=dense"):
            model.build(cfg)
        return
    if bridge == "concat" and (enc_cell, enc_layers) != (dec_cell, dec_layers):
        # Tensor by tensor needs the same tensors: refuse, naming both and the fix.
        with pytest.raises(
            ValueError,
            match=r"same layers and state tensors, but the encoder "
            r"is .* decoder is .*--bridge=dense",
        ):
            model.build(cfg)
        return
    m = model.build(cfg)
    params = m.init(jax.random.PRNGKey(0))
    enc_spec, dec_spec = cfg.encoder_spec(), cfg.decoder_spec()
    state = [tuple(jnp.full((3, enc_spec.width), 0.5) for _ in enc_spec.names)] * enc_layers
    cond = bridges.BRIDGES[cfg.bridge].apply(params["bridge"], state, dec_spec)
    assert len(cond.state) == dec_layers
    for carry in cond.state:
        assert len(carry) == (2 if dec_cell == "lstm" else 1)
        assert all(t.shape == (3, DEC_HIDDEN) and np.all(np.isfinite(t)) for t in carry)
    if bridge == "concat":  # the raw encoder tensor leads each decoder tensor, unchanged
        for carry in cond.state:
            for t in carry:
                np.testing.assert_array_equal(t[:, : enc_spec.width], 0.5)
    if bridge == "zero":
        np.testing.assert_array_equal(bridges.flatten(cond.state), 0.0)
    expected_step = enc_spec.total if bridge == "concat_inputs" else None
    assert (cond.step_inputs is None) == (expected_step is None)
    if expected_step:
        assert cond.step_inputs.shape == (3, expected_step)
    if (enc_cell, dec_cell, bidi, enc_layers) == ("gru", "lstm", True, 2):  # one full pass each
        out = m.apply(params, make_batch(), jax.random.PRNGKey(1), 0.5)
        assert out.logits.shape == (4, 6, 13) and np.all(np.isfinite(out.logits))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidi", [False, True])
def test_copy_passes_a_matching_state_through(cell, bidi):
    cfg = _config("copy", cell, cell, bidi, 2, 2, dec_hidden=0)  # 0: directions * hidden
    m = model.build(cfg)
    params = m.init(jax.random.PRNGKey(0))
    spec = cfg.encoder_spec()
    state = [tuple(jnp.full((3, spec.width), float(l)) for _ in spec.names) for l in range(2)]
    cond = bridges.BRIDGES["copy"].apply(params["bridge"], state, cfg.decoder_spec())
    for got, want in zip(cond.state, state):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_copy_error_names_both_structures():
    with pytest.raises(ValueError) as err:
        model.build(_config("copy", "lstm", "gru", True, 2, 1, dec_hidden=8))
    msg = str(err.value)
    assert "lstm with 2 layer(s) of (c[8], h[8])" in msg
    assert "gru with 1 layer(s) of (h[8])" in msg
    assert "--bridge=dense" in msg and "\n" not in msg


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_concat_joins_each_layer_and_tensor_with_its_own_projection(cell, layers):
    """Marker values: encoder layer l's tensor j holds one distinct constant; the decoder's
    layer l tensor j must be exactly that marker followed by tanh of its own projection of it
    (so c goes into c and the top h, the attention query, gets the top encoder h)."""
    cfg = _config("concat", cell, cell, True, layers, layers)
    m = model.build(cfg)
    params = m.init(jax.random.PRNGKey(0))["bridge"]
    enc_spec, dec_spec = cfg.encoder_spec(), cfg.decoder_spec()
    marker = lambda l, j: float(1 + 2 * l + j) / 4  # noqa: E731  exact in float32
    state = [
        tuple(jnp.full((3, enc_spec.width), marker(l, j)) for j in range(len(enc_spec.names)))
        for l in range(layers)
    ]
    cond = bridges.BRIDGES["concat"].apply(params, state, dec_spec)
    assert len(cond.state) == layers
    width = enc_spec.width
    for l, carry in enumerate(cond.state):
        assert len(carry) == len(dec_spec.names)
        for j, (name, t) in enumerate(zip(dec_spec.names, carry)):
            assert t.shape == (3, DEC_HIDDEN)
            np.testing.assert_array_equal(t[:, :width], marker(l, j))
            proj = params["proj"][l][name]
            want = np.tanh(
                marker(l, j) * np.asarray(proj["kernel"]).sum(0) + np.asarray(proj["bias"])
            )
            np.testing.assert_allclose(
                t[:, width:], np.broadcast_to(want, (3, DEC_HIDDEN - width)), rtol=1e-5, atol=1e-6
            )
    # Every projection is its own: no two layers or tensors share a kernel.
    kernels = [np.asarray(p["kernel"]) for layer in params["proj"] for p in layer.values()]
    assert all(not np.allclose(a, b) for a, b in itertools.combinations(kernels, 2))


def test_concat_needs_a_wider_decoder():
    with pytest.raises(ValueError, match=r"concat.*--bridge=dense.*decoder_hidden at 0"):
        model.build(_config("concat", dec_hidden=4))


@pytest.mark.parametrize(
    "bridge,attention_init,width",
    [
        ("concat", "dense", 2),
        ("attention", "concat", 2),
        ("attention", "dense", 1),
        ("dense", "concat", 1),
    ],
)  # attention_init counts only under the attention bridge
def test_the_default_decoder_is_wide_enough_for_concat_also_under_attention(
    bridge, attention_init, width
):
    cfg = _config(bridge, bidi=True, dec_hidden=0, attention_init=attention_init)
    assert cfg.dec_hidden == width * 2 * ENC_HIDDEN  # two directions
    m = model.build(cfg)  # concat fits: the decoder holds the encoder state and a projection
    out = m.apply(m.init(jax.random.PRNGKey(0)), make_batch(), jax.random.PRNGKey(1), 0.5)
    assert np.all(np.isfinite(out.logits))


def test_unknown_names_list_the_choices():
    assert model.BRIDGE_SPELLINGS == sorted([*bridges.BRIDGES, "attention"])
    with pytest.raises(ValueError, match=re.escape(str(model.BRIDGE_SPELLINGS))):
        model.build(_config("bogus"))
    with pytest.raises(ValueError, match="attention_init"):
        model.build(_config("attention", attention_init="attention"))
    with pytest.raises(
        ValueError,
        match=r"--attention_type 'luong'.*" + re.escape(str(sorted(attention.ATTENTION))),
    ):
        model.ModelConfig.from_experiment(
            src_vocab=11, tgt_vocab=13, bridge="attention", attention_type="luong"
        )
    with pytest.raises(ValueError, match=re.escape(str(sorted(bridges.BRIDGES)))):
        model.build(dataclasses.replace(_config("dense"), bridge="bogus"))
    with pytest.raises(ValueError, match=re.escape(str(attention.CHOICES))):
        model.build(dataclasses.replace(_config("dense"), attention="luong"))
    # ModelConfig itself has no `attention` bridge: the error says how it is spelled there.
    with pytest.raises(ValueError, match=r"attention as its own field.*from_experiment"):
        model.build(dataclasses.replace(_config("dense"), bridge="attention"))


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("emb", 0, "--emb must be at least 1, got 0"),
        (
            "decoder_hidden",
            -5,
            "--config.model.decoder_hidden must be at least 0 (0: its default size), got -5",
        ),
        ("decoder_layers", -1, "--config.model.decoder_layers must be at least 0"),
        ("attention_dim", -3, "--config.model.attention_dim must be at least 0"),
        ("dropout", 1.0, "--dropout must lie in [0, 1), got 1.0"),
        ("temperature", 0.0, "--temperature must be positive, got 0.0"),
    ],
)
def test_sizes_outside_their_range_are_named_before_anything_is_built(field, value, message):
    cfg = dataclasses.replace(_config("attention"), **{field: value})
    with pytest.raises(ValueError) as err:
        model.build(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize("bridge", model.BRIDGE_SPELLINGS)
def test_the_conditioning_is_real(bridge):
    """d loss / d encoder params is non-zero for every bridge but `zero`, where it is exactly 0."""
    dec_hidden = 0 if bridge == "copy" else DEC_HIDDEN
    m = model.build(_config(bridge, dec_hidden=dec_hidden, attention_init="zero"))
    params = m.init(jax.random.PRNGKey(0))
    batch = make_batch()

    def loss(p):
        out = m.apply(p, batch, jax.random.PRNGKey(1), 0.0)
        return losses.cross_entropy(out.logits, batch["targets"], batch["targets_len"])

    grads = jax.grad(loss)(params)["encoder"]
    norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads))))
    if bridge == "zero":
        assert norm == 0.0
    else:
        assert norm > 1e-6


@pytest.mark.parametrize("bridge", sorted(bridges.BRIDGES))
def test_the_default_decoder_width_is_the_one_the_bridge_declares(bridge):
    for bidi in (False, True):
        cfg = model.ModelConfig(
            src_vocab=11, tgt_vocab=13, hidden=ENC_HIDDEN, bidirectional=bidi, bridge=bridge
        )
        enc = cfg.encoder_spec()
        assert cfg.dec_hidden == bridges.BRIDGES[bridge].decoder_width(enc) >= enc.width
        assert cfg.decoder_spec().width == cfg.dec_hidden


@pytest.mark.parametrize("bridge", sorted(bridges.BRIDGES))
@pytest.mark.parametrize("attention_name", sorted(attention.ATTENTION))
def test_attention_is_its_own_axis_over_every_bridge(bridge, attention_name):
    """Every bridge, with and without each attention: the decoder attends exactly when asked,
    starts from the bridge's state, and a missing or added attention changes the parameters by
    the decoder's `attention` entry only."""
    kw = dict(src_vocab=11, tgt_vocab=13, emb=6, hidden=ENC_HIDDEN, bridge=bridge)
    if attention_name in ("dot", "scaled_dot") and bridge == "concat":
        # concat widens the decoder past the keys: refused at build time, naming both sizes
        with pytest.raises(ValueError, match=r"decoder hidden size \(8\).*output size \(4\)"):
            model.build(model.ModelConfig(**kw, attention=attention_name))
        return
    plain = model.build(model.ModelConfig(**kw))
    attends = model.build(model.ModelConfig(**kw, attention=attention_name))
    p_plain, p_attends = (m.init(jax.random.PRNGKey(0)) for m in (plain, attends))
    assert "attention" not in p_plain["decoder"] and "attention" in p_attends["decoder"]
    for part in ("encoder", "bridge"):  # same keys, so the same values
        for a, b in zip(
            jax.tree_util.tree_leaves(p_plain[part]), jax.tree_util.tree_leaves(p_attends[part])
        ):
            np.testing.assert_array_equal(a, b)
    batch = make_batch()
    assert plain.apply(p_plain, batch, jax.random.PRNGKey(1), 0.5).attention is None
    out = attends.apply(p_attends, batch, jax.random.PRNGKey(1), 0.5)
    assert out.attention.shape == (*batch["targets"].shape, batch["inputs"].shape[1])
    assert np.all(np.isfinite(out.logits))


@pytest.mark.parametrize(
    "bridge,attention_type,attention_init,want",
    [
        ("attention", "dot", "concat_inputs", ("concat_inputs", "dot")),
        ("attention", "bahdanau", "dense", ("dense", "bahdanau")),
        ("dense", "dot", "concat", ("dense", "none")),  # attention_* count under `attention` only
        ("zero", "general", "copy", ("zero", "none")),
    ],
)
def test_the_config_files_spelling_of_attention(bridge, attention_type, attention_init, want):
    cfg = model.ModelConfig.from_experiment(
        src_vocab=11,
        tgt_vocab=13,
        bridge=bridge,
        attention_type=attention_type,
        attention_init=attention_init,
    )
    assert (cfg.bridge, cfg.attention) == want
    # the defaults are experiments/default.py's: Bahdanau attention over a dense initial state
    default = model.ModelConfig.from_experiment(src_vocab=11, tgt_vocab=13)
    assert (default.bridge, default.attention) == ("dense", "bahdanau")


def test_the_readme_bridges_table_lists_exactly_the_registry():
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("- **Bridges** (`--bridge`)") :].split("\n\n", 2)[1]  # after the intro
    rows = re.findall(r"^  \| `([\w-]+)` \|", table, flags=re.M)
    assert rows[0] == "--bridge" and sorted(rows[1:]) == model.BRIDGE_SPELLINGS, rows
