"""Evaluation: teacher-forced loss and accuracy, free-running exact match and corpus BLEU.

The jitted step returns sums (not means) over real tokens and real examples, so batches padded
with filler examples (targets_len == 0) and any split over devices add up exactly.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import sacrebleu

from s2s_jax.training import losses, parallel


def make_eval_step(model, beam_size: int = 1, penalty: str = "gnmt", alpha: float = 0.6):
    """(params, batch) -> (sums dict, decoded tokens [B, T]); pure, jit it with shardings.

    Decoding is free running for `beam_size == 1` (model.decode_greedy: each step reads the
    model's previous output as training fed it back, and emits its argmax), else the best
    beam-search hypothesis. The free-running token accuracy (for the exposure gap) always comes
    from free-running decoding.
    """

    def eval_step(params, batch):
        targets, lengths = batch["targets"], batch["targets_len"]
        forced = model.apply(
            params, batch, jax.random.PRNGKey(0), 0.0, train=False, teacher_forcing=True
        )
        mask = losses.target_mask(targets, lengths)  # [B, T]
        tokens = jnp.sum(mask)
        source = (params, batch["inputs"], batch["inputs_len"], targets.shape[1])
        greedy = model.decode_greedy(*source, aux_inputs=batch.get("aux_inputs"))
        predicted = jnp.argmax(greedy.logits, axis=-1).astype(jnp.int32)  # [B, T]
        if beam_size > 1:
            beams, _ = model.decode_beam(*source, beam_size, penalty, alpha)
            predicted = beams[:, 0]  # [B, T], best hypothesis
        examples = jnp.sum(lengths > 0)
        sums = {
            "loss": losses.cross_entropy(forced.logits, targets, lengths) * tokens,
            "token_accuracy": losses.token_accuracy(forced.logits, targets, lengths) * tokens,
            "free_token_accuracy": losses.token_accuracy(greedy.logits, targets, lengths) * tokens,
            "exact_match": losses.exact_match(predicted, targets, lengths) * examples,
            "tokens": tokens,
            "examples": examples.astype(jnp.float32),
        }
        return sums, predicted

    return eval_step


def detokenize(vocab, ids, tokenizer: str) -> str:
    """Ids up to the first EOS as text: words joined by spaces, characters joined as they are."""
    return ("" if tokenizer == "char" else " ").join(vocab.decode([int(i) for i in ids]))


def corpus_bleu(hypotheses, references) -> float:
    """sacrebleu's corpus BLEU (default 13a tokenisation) on detokenised strings."""
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def evaluate(step_fn, params, batches, tgt_vocab, tokenizer: str, mesh, max_examples: int = 0):
    """Runs `step_fn` over evaluation batches and reduces the sums to metrics.

    Returns (metrics dict with loss, token_accuracy, exact_match, bleu, free_token_accuracy,
    exposure_gap, examples; hypotheses; references).
    """
    totals, hyps, refs = {}, [], []
    seen = 0
    for local in batches:
        if max_examples and seen >= max_examples:
            break
        batch = parallel.global_batch(local, mesh)
        sums, predicted = step_fn(params, batch)
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        predicted = parallel.to_host(predicted)
        targets = parallel.to_host(batch["targets"])
        lengths = parallel.to_host(batch["targets_len"])
        for pred, tgt, n in zip(predicted, targets, lengths):
            if n > 0:
                hyps.append(detokenize(tgt_vocab, pred, tokenizer))
                refs.append(detokenize(tgt_vocab, tgt, tokenizer))
        seen += int(np.sum(lengths > 0))
    tokens, examples = max(totals.get("tokens", 0.0), 1.0), max(totals.get("examples", 0.0), 1.0)
    metrics = {
        "loss": totals.get("loss", 0.0) / tokens,
        "token_accuracy": totals.get("token_accuracy", 0.0) / tokens,
        "free_token_accuracy": totals.get("free_token_accuracy", 0.0) / tokens,
        "exact_match": totals.get("exact_match", 0.0) / examples,
        "bleu": corpus_bleu(hyps, refs) if hyps else 0.0,
        "examples": int(totals.get("examples", 0)),
    }
    metrics["perplexity"] = math.exp(min(metrics["loss"], 50.0))  # teacher-forced
    # Exposure bias: accuracy lost when the decoder reads its own outputs instead of gold ones.
    metrics["exposure_gap"] = metrics["token_accuracy"] - metrics["free_token_accuracy"]
    return metrics, hyps, refs
