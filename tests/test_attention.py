import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.models import attention


def _inputs(seed=0):
    rs = np.random.RandomState(seed)
    keys = jnp.asarray(rs.randn(3, 6, 4), jnp.float32)
    query = jnp.asarray(rs.randn(3, 4), jnp.float32)
    mask = jnp.arange(6)[None, :] < jnp.array([6, 3, 1])[:, None]
    return query, keys, mask


@pytest.mark.parametrize("name", sorted(attention.ATTENTION))
@pytest.mark.parametrize("normalize", [False, True])
def test_weights_are_a_masked_distribution_and_ignore_padding(name, normalize):
    attn = attention.ATTENTION[name]
    query, keys, mask = _inputs()
    params = attn.init(jax.random.PRNGKey(0), 4, 4, 5, normalize)
    context, weights = attention.attend(attn, params, query, keys, attn.prepare(params, keys), mask)
    assert context.shape == (3, 4) and weights.shape == (3, 6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(weights)[~np.asarray(mask)] == 0.0)  # exactly zero, not tiny
    # Garbage in the padded key positions and appended padding change nothing.
    noisy = jnp.where(mask[..., None], keys, 100.0)
    noisy = jnp.pad(noisy, ((0, 0), (0, 3), (0, 0)), constant_values=7.0)
    noisy_mask = jnp.pad(mask, ((0, 0), (0, 3)))
    ctx2, w2 = attention.attend(attn, params, query, noisy, attn.prepare(params, noisy), noisy_mask)
    np.testing.assert_allclose(ctx2, context, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w2[:, :6], weights, rtol=1e-5, atol=1e-7)


def _scores(attn, params, query, keys):
    return attn.score(params, attn.project(params, query), attn.prepare(params, keys))


def test_scores_match_their_formulas():
    query, keys, mask = _inputs(1)
    q, k = np.asarray(query), np.asarray(keys)
    dot = attention.ATTENTION["dot"]
    np.testing.assert_allclose(
        _scores(dot, {}, query, keys), np.einsum("bd,bsd->bs", q, k), rtol=1e-5
    )
    scaled = attention.ATTENTION["scaled_dot"]
    np.testing.assert_allclose(
        _scores(scaled, {}, query, keys), np.einsum("bd,bsd->bs", q, k) / 2.0, rtol=1e-5
    )
    general = attention.ATTENTION["general"]
    gp = general.init(jax.random.PRNGKey(0), 4, 4, 0, False)
    w = np.asarray(gp["key"]["kernel"])  # [Dk, Dq]
    np.testing.assert_allclose(
        _scores(general, gp, query, keys), np.einsum("bd,bsd->bs", q, k @ w), rtol=1e-5, atol=1e-5
    )
    add = attention.ATTENTION["bahdanau"]
    for normalize in (False, True):
        ap = add.init(jax.random.PRNGKey(2), 4, 4, 5, normalize)
        v = np.asarray(ap["v"])
        if normalize:
            v = float(ap["g"]) * v / np.linalg.norm(v)
        hidden = np.tanh(
            k @ np.asarray(ap["key"]["kernel"])
            + np.asarray(ap["key"]["bias"])
            + (q @ np.asarray(ap["query"]["kernel"]))[:, None, :]
        )
        np.testing.assert_allclose(_scores(add, ap, query, keys), hidden @ v, rtol=1e-5, atol=1e-5)


def test_an_empty_source_gives_zero_weights_not_nan():
    scores = jnp.ones((2, 4))
    mask = jnp.array([[True, True, False, False], [False] * 4])
    w = attention.masked_softmax(scores, mask)
    np.testing.assert_allclose(w, [[0.5, 0.5, 0, 0], [0, 0, 0, 0]])


def test_dot_attention_with_unequal_sizes_names_both_and_the_fix():
    with pytest.raises(
        ValueError, match=r"decoder hidden size \(8\).*encoder output size \(4\).*general"
    ):
        attention.ATTENTION["dot"].init(jax.random.PRNGKey(0), 8, 4, 0, False)
    with pytest.raises(ValueError, match="bahdanau"):
        attention.get_attention("luong")


def test_none_is_no_attention_and_every_other_choice_an_entry():
    assert attention.get_attention(attention.NONE) is None
    assert attention.CHOICES == [attention.NONE, *sorted(attention.ATTENTION)]
    for name in attention.ATTENTION:
        assert attention.get_attention(name) is attention.ATTENTION[name]
    with pytest.raises(ValueError, match=re.escape(str(attention.CHOICES))):
        attention.get_attention("None")
