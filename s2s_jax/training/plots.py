"""Pictures a researcher would rather look at than read: learning curves and attention maps.

Both write PNG files with matplotlib's Agg backend (no display needed).
"""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from s2s_jax.models import attention as attention_lib  # noqa: E402


def learning_curves(metrics_path: str, png_path: str) -> None:
    """Loss, accuracy and sampling probability against step, from a metrics.jsonl file."""
    with open(metrics_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    train = [r for r in rows if "split" not in r]
    valid = [r for r in rows if r.get("split") == "valid"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    step = lambda rs: [r["step"] for r in rs]  # noqa: E731
    axes[0].plot(step(train), [r["loss"] for r in train], label="train (sampled inputs)")
    axes[0].plot(step(valid), [r["loss"] for r in valid], "o-", label="valid (teacher forced)")
    axes[0].set(title="loss", xlabel="step", yscale="log")
    axes[1].plot(step(train), [r["token_accuracy"] for r in train], label="train token acc.")
    axes[1].plot(step(valid), [r["token_accuracy"] for r in valid], "o-", label="valid token acc.")
    axes[1].plot(step(valid), [r["exact_match"] for r in valid], "s-", label="valid exact match")
    axes[1].set(title="accuracy", xlabel="step", ylim=(0, 1.02))
    axes[2].plot(step(train), [r["sampling_probability"] for r in train], label="schedule p")
    axes[2].plot(step(train), [r["sampled_fraction"] for r in train], label="realised fraction")
    axes[2].set(title="scheduled sampling", xlabel="step", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def attention_heatmaps(examples, png_path: str) -> None:
    """One alignment heatmap per example.

    Args:
      examples: list of (source tokens, output tokens, weights [T_out, S]) with the weights cut
        to the real lengths.
      png_path: where to write the PNG.
    """
    n = len(examples)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.5), squeeze=False)
    for ax, (src, out, weights) in zip(axes[0], examples):
        ax.imshow(np.asarray(weights), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), src, rotation=90)
        ax.set_yticks(range(len(out)), out)
        ax.set(xlabel="source", ylabel="output")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def write_run_pictures(
    workdir: str, net, params, batch, src_vocab, tgt_vocab, examples: int = 4
) -> list:
    """learning_curves.png and, for attention models, attention.png for the first test examples.

    batch: a host batch (numpy) of test examples. Returns the paths written.
    """
    written = []
    metrics = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics):
        written.append(os.path.join(workdir, "learning_curves.png"))
        learning_curves(metrics, written[-1])
    if attention_lib.get_attention(net.config.attention) is None:
        return written
    n = min(examples, int(np.sum(np.asarray(batch["inputs_len"]) > 0)))
    inputs, lengths = batch["inputs"][:n], batch["inputs_len"][:n]
    out = net.decode_greedy(params, inputs, lengths, batch["targets"].shape[1])
    tokens = np.argmax(np.asarray(out.logits), -1)
    weights = np.asarray(out.attention)
    items = []
    for b in range(n):
        src = src_vocab.decode([int(i) for i in inputs[b][: lengths[b]]])
        hyp = tgt_vocab.decode([int(i) for i in tokens[b]])
        steps = min(len(hyp) + 1, tokens.shape[1])  # the output tokens and their EOS
        labels = hyp + ["</s>"] if steps > len(hyp) else hyp
        items.append((src, labels[:steps], weights[b, :steps, : len(src)]))
    written.append(os.path.join(workdir, "attention.png"))
    attention_heatmaps(items, written[-1])
    return written
