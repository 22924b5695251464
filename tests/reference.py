"""A plain Python-loop decoder, written without the scan's hoisting, to check decoders.unroll.

It re-derives every step from the primitives (cell.project on the whole concatenated input,
attention scores, the output layer) and reproduces the documented PRNG protocol: the decoder key
is split into one key per step, and each step key into (choose, token, dropout).
"""

import jax
import jax.numpy as jnp

from s2s_jax.models import attention as attention_lib
from s2s_jax.models import bridges, cells, encoders, sampling
from s2s_jax.models.model import BOS_ID


def decode(model, params, batch, rng, probability, *, free_running=False):
    cfg = model.config
    enc_cell, dec_cell = cells.get_cell(cfg.cell), cells.get_cell(cfg.dec_cell)
    bridge = bridges.get_bridge(cfg.bridge)
    k_enc, k_dec = jax.random.split(rng)
    encoded = encoders.encode(params["encoder"], enc_cell, batch["inputs"], batch["inputs_len"])
    cond = bridge.apply(params["bridge"], encoded.state, cfg.decoder_spec())
    dp = params["decoder"]
    emb = dp["embed"]["embedding"]  # [V, E]
    targets = batch["targets"]
    batch_size, steps = targets.shape
    gold = jnp.concatenate([jnp.full((batch_size, 1), BOS_ID, targets.dtype), targets[:, :-1]], 1)
    attn = attention_lib.get_attention(cfg.attention)  # None: no attention
    state = list(cond.state)
    prev_logits = None
    keys = jax.random.split(k_dec, steps)
    all_logits, all_ids, all_weights = [], [], []
    for t in range(steps):
        k_choose, k_token, _ = jax.random.split(keys[t], 3)
        if t == 0:
            fed = jnp.zeros((batch_size,), bool)
        elif free_running:
            fed = jnp.ones((batch_size,), bool)
        else:
            p = jnp.broadcast_to(jnp.asarray(probability, jnp.float32), (batch_size,))
            fed = jax.random.uniform(k_choose, (batch_size,)) < p
        ids = jnp.full((batch_size,), -1, jnp.int32)
        if t == 0:
            x = emb[gold[:, 0]]
        elif cfg.sampling_mode == "embedding":
            sample_from = "argmax" if free_running else cfg.sample_from
            tokens = sampling.sample_tokens(k_token, prev_logits, sample_from, cfg.temperature)
            x = jnp.where(fed[:, None], emb[tokens], emb[gold[:, t]])
            ids = jnp.where(fed, tokens, -1)
        else:  # output mode, training and free running alike: the previous logits, transformed
            source = prev_logits if cfg.output_gradient else jax.lax.stop_gradient(prev_logits)
            fed_vec = sampling.NEXT_INPUTS[cfg.next_inputs].apply(
                dp.get("next_inputs"), source, emb, cfg.temperature
            )
            x = jnp.where(fed[:, None], fed_vec, emb[gold[:, t]])
            ids = jnp.where(fed, jnp.argmax(prev_logits, -1), -1)
        parts = [x]
        if attn is not None:
            query = state[-1][-1]
            ap = dp["attention"]
            scores = attn.score(ap, attn.project(ap, query), attn.prepare(ap, encoded.outputs))
            weights = []
            for b in range(batch_size):  # softmax over the real positions only, one row at a time
                n = int(batch["inputs_len"][b])
                w = jax.nn.softmax(scores[b, :n])
                weights.append(jnp.concatenate([w, jnp.zeros(scores.shape[1] - n)]))
            weights = jnp.stack(weights)
            context = jnp.einsum("bs,bsd->bd", weights, encoded.outputs)
            parts.append(context)
            all_weights.append(weights)
        if cond.step_inputs is not None:
            parts.append(cond.step_inputs)
        if batch.get("aux_inputs") is not None:
            parts.append(batch["aux_inputs"][:, t])
        h = jnp.concatenate(parts, axis=-1)
        new_state = []
        for layer_params, carry in zip(dp["layers"], state):
            carry, h = dec_cell.step(layer_params, carry, dec_cell.project(layer_params, h))
            new_state.append(carry)
        state = new_state
        out = h if attn is None else jnp.concatenate([h, context], -1)
        logits = out @ dp["out"]["kernel"] + dp["out"]["bias"]
        prev_logits = logits
        all_logits.append(logits)
        all_ids.append(ids)
    weights = jnp.stack(all_weights, 1) if all_weights else None
    return jnp.stack(all_logits, 1), jnp.stack(all_ids, 1), weights
