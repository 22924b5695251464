import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax.training import losses


def _case():
    rs = np.random.RandomState(0)
    logits = rs.randn(3, 4, 5).astype(np.float32)
    targets = np.array([[1, 2, 0, 0], [3, 4, 2, 0], [0, 0, 0, 0]])
    lengths = np.array([2, 3, 0])
    return logits, targets, lengths


def test_cross_entropy_is_the_mean_over_real_tokens():
    logits, targets, lengths = _case()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    want = -np.mean([logp[b, t, targets[b, t]] for b, t in real])
    np.testing.assert_allclose(losses.cross_entropy(logits, targets, lengths), want, rtol=1e-5)
    eps = 0.1
    smooth = np.mean(
        [-(1 - eps) * logp[b, t, targets[b, t]] - eps * logp[b, t].mean() for b, t in real]
    )
    np.testing.assert_allclose(
        losses.cross_entropy(logits, targets, lengths, eps), smooth, rtol=1e-5
    )
    # Padding logits are irrelevant.
    noisy = logits.copy()
    noisy[0, 2:] = 50.0
    noisy[2] = -7.0
    np.testing.assert_allclose(
        losses.cross_entropy(noisy, targets, lengths),
        losses.cross_entropy(logits, targets, lengths),
        rtol=1e-6,
    )


def test_accuracy_and_exact_match_ignore_padding_and_filler_examples():
    targets = jnp.array([[5, 2, 0], [6, 7, 2], [0, 0, 0]])
    lengths = jnp.array([2, 3, 0])
    preds = jnp.array([[5, 2, 9], [6, 8, 2], [1, 1, 1]])
    onehot = jax.nn.one_hot(preds, 10) * 10.0
    np.testing.assert_allclose(losses.token_accuracy(onehot, targets, lengths), 4 / 5)
    np.testing.assert_allclose(losses.exact_match(preds, targets, lengths), 1 / 2)
    np.testing.assert_allclose(losses.exact_match(targets, targets, lengths), 1.0)


def test_cross_entropy_gradient_is_softmax_minus_smoothed_target_on_real_tokens():
    logits, targets, lengths = _case()
    eps = 0.1
    grad = jax.grad(losses.cross_entropy)(jnp.asarray(logits), targets, lengths, eps)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    target = (1 - eps) * np.eye(5)[targets] + eps / 5
    mask = (np.arange(4)[None, :] < lengths[:, None])[..., None]
    np.testing.assert_allclose(grad, (probs - target) * mask / lengths.sum(), atol=1e-6)
