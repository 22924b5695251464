"""The decoder: one step function, its `lax.scan` unroll with scheduled sampling, greedy decoding.

At step t the decoder reads an input token embedding (`E`), and, depending on the bridge, the
attention context over the encoder outputs (`Dk`) and a fixed conditioning vector (`D`), plus
optional auxiliary inputs (`A`), all concatenated. Because the layer-0 input projection is linear
in that concatenation, each part gets its own slice of the kernel: the gold-token part and the
auxiliary part are projected for all T steps in one matmul before the scan, the fixed part once,
and only what is known inside the loop (a fed-back token, the attention context) is projected per
step.

Scheduled sampling (Bengio et al. 2015; TF's ScheduledEmbeddingTrainingHelper and
ScheduledOutputTrainingHelper): at every step t >= 1 an independent Bernoulli draw per example
with probability `p` decides whether the input is the gold token or the model's previous output:
- `embedding` mode: a token id drawn from step t-1's logits (argmax or categorical at a
  temperature), embedded by the decoder embedding; no gradient through the discrete choice;
- `output` mode: step t-1's output through a next-inputs function (sampling.NEXT_INPUTS); the
  gradient through this vector is stopped unless `output_gradient` is set (TF's helper lets it
  flow; Bengio et al. treat the fed-back input as a constant).
Step 0 always reads BOS.
"""
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from s2s_jax import attention as attention_lib
from s2s_jax import cells, encoders, sampling
from s2s_jax.cells import dense, dense_init


class DecoderOptions(NamedTuple):
    """Static (hashable) decoder settings, resolved from registry names outside jit."""

    cell: cells.Cell
    attention: Optional[attention_lib.Attention]  # None: no attention
    sampling_mode: str = "embedding"  # 'embedding' | 'output'
    sample_from: str = "categorical"  # 'argmax' | 'categorical' (embedding mode)
    temperature: float = 1.0
    next_inputs: str = "softmax_embedding"  # output mode: key of sampling.NEXT_INPUTS
    output_gradient: bool = False  # output mode: let gradients flow through the fed-back vector
    dropout_rate: float = 0.0


class InputSizes(NamedTuple):
    emb: int  # E, the token embedding
    context: int  # Dk, attention context (0 without attention)
    fixed: int  # D, fixed per-example conditioning vector (0 without)
    aux: int  # A, auxiliary per-step inputs (0 without)


class DecoderOutput(NamedTuple):
    logits: jax.Array  # [B, T, V]
    sample_ids: jax.Array  # [B, T] int32, -1 where the gold input was read
    sampled_fraction: jax.Array  # scalar: sampled inputs / eligible real target positions (t>=1)
    attention: Optional[jax.Array]  # [B, T, S] or None


def init(rng, opts: DecoderOptions, vocab: int, hidden: int, layers: int, sizes: InputSizes,
         key_dim: int, attn_dim: int, attention_normalize: bool) -> dict:
    """Decoder parameters: embedding, cell stack, attention, output layer, next-inputs function."""
    k_emb, k_stack, k_attn, k_out, k_next = jax.random.split(rng, 5)
    params = {
        "embed": encoders.embed_init(k_emb, vocab, sizes.emb),
        "layers": cells.stack_init(opts.cell, k_stack, sum(sizes), hidden, layers),
    }
    out_dim = hidden + sizes.context
    params["out"] = dense_init(k_out, out_dim, vocab, use_bias=True)
    if opts.attention is not None:
        params["attention"] = opts.attention.init(k_attn, hidden, key_dim, attn_dim,
                                                  attention_normalize)
    if opts.sampling_mode == "output":
        params["next_inputs"] = sampling.NEXT_INPUTS[opts.next_inputs].init(k_next, out_dim,
                                                                            sizes.emb)
    return params


def _kernel_parts(layer0, sizes: InputSizes):
    """Splits the layer-0 input kernel by rows into the E, Dk, D and A parts."""
    kernel = layer0["input"]["kernel"]  # [E + Dk + D + A, G*H]
    bounds = [sizes.emb, sizes.emb + sizes.context, sizes.emb + sizes.context + sizes.fixed]
    return jnp.split(kernel, bounds, axis=0)


class _Memory(NamedTuple):
    """What the step needs from the encoder; fields are None when unused."""

    keys: Optional[jax.Array]  # [B, S, Dk] encoder outputs
    prepared: Optional[jax.Array]  # [B, S, A'] attention.prepare(keys)
    mask: Optional[jax.Array]  # [B, S]
    fixed_proj: Optional[jax.Array]  # [B, G*H] projection of the fixed conditioning vector


def _step(params, opts: DecoderOptions, sizes: InputSizes, memory: _Memory, probability,
          free_running: bool, carry, xs):
    """One decoder step; the body of the scan.

    carry: (state, prev_logits [B, V], prev_out [B, O]); xs: (t, gold_proj [B, G*H],
    aux_proj [B, G*H] or None, key).
    """
    state, prev_logits, prev_out = carry
    t, gold_proj, aux_proj, key = xs
    k_choose, k_token, k_dropout = jax.random.split(key, 3)
    batch = gold_proj.shape[0]
    k_emb, k_ctx, _, _ = _kernel_parts(params["layers"][0], sizes)
    bias = params["layers"][0]["input"]["bias"]

    # Which examples feed their own previous output (never at t = 0, which reads BOS).
    if free_running:
        fed = jnp.broadcast_to(t > 0, (batch,))
    else:
        fed = sampling.choose_sampled(k_choose, probability, batch) & (t > 0)  # [B]
    if opts.sampling_mode == "embedding":
        logits_in = jax.lax.stop_gradient(prev_logits)
        tokens = sampling.sample_tokens(k_token, logits_in, opts.sample_from, opts.temperature)
        fed_vec = encoders.embed(params["embed"], tokens)  # [B, E]
    else:
        tokens = jnp.argmax(prev_logits, axis=-1).astype(jnp.int32)
        fed_vec = sampling.NEXT_INPUTS[opts.next_inputs].apply(
            params.get("next_inputs"), prev_out, prev_logits, params["embed"]["embedding"],
            opts.temperature)  # [B, E]
        if not opts.output_gradient:
            fed_vec = jax.lax.stop_gradient(fed_vec)
    x_proj = jnp.where(fed[:, None], fed_vec @ k_emb + bias, gold_proj)  # [B, G*H]
    sample_ids = jnp.where(fed, tokens, -1)

    weights = None
    if opts.attention is not None:
        query = state[-1][-1]  # top layer's h from the previous step: [B, H]
        context, weights = attention_lib.attend(opts.attention, params["attention"], query,
                                                memory.keys, memory.prepared, memory.mask)
        x_proj = x_proj + context @ k_ctx
    if memory.fixed_proj is not None:
        x_proj = x_proj + memory.fixed_proj
    if aux_proj is not None:
        x_proj = x_proj + aux_proj

    rng = k_dropout if opts.dropout_rate > 0 else None
    state, h = cells.stack_step(opts.cell, params["layers"], state, None, x_proj0=x_proj,
                                dropout_rate=opts.dropout_rate, rng=rng)
    out = h if opts.attention is None else jnp.concatenate([h, context], axis=-1)  # [B, O]
    logits = dense(params["out"], out)  # [B, V]
    emitted = (logits, sample_ids, fed, weights)
    return (state, logits, out), emitted


def _prepare_memory(params, opts, sizes, encoder_outputs, source_mask, fixed_inputs):
    _, _, k_fixed, _ = _kernel_parts(params["layers"][0], sizes)
    keys = prepared = mask = fixed_proj = None
    if opts.attention is not None:
        keys, mask = encoder_outputs, source_mask
        prepared = opts.attention.prepare(params["attention"], keys)  # hoisted: once per batch
    if fixed_inputs is not None:
        fixed_proj = fixed_inputs @ k_fixed  # [B, G*H]
    return _Memory(keys, prepared, mask, fixed_proj)


def unroll(params, opts: DecoderOptions, sizes: InputSizes, initial_state, gold_inputs, rng,
           probability, *, encoder_outputs=None, source_mask=None, fixed_inputs=None,
           aux_inputs=None, target_lengths=None, free_running: bool = False) -> DecoderOutput:
    """Runs the decoder over T steps with scheduled sampling, as one `lax.scan`.

    Args:
      params, opts, sizes: from `init` and the model.
      initial_state: per layer, the carry tuples from the bridge.
      gold_inputs: `[B, T]` gold input ids (BOS, then the targets shifted right).
      rng: key; split into one key per step, so every step's draws are reproducible.
      probability: sampling probability, scalar or `[B]` (traced: changing it never recompiles).
      encoder_outputs, source_mask: `[B, S, Dk]`, `[B, S]` for attention.
      fixed_inputs: `[B, D]` vector concatenated to every input (concat_inputs bridge).
      aux_inputs: optional `[B, T, A]` concatenated to every input, gold or fed back.
      target_lengths: `[B]` real target lengths (with EOS) for the sampled fraction.
      free_running: feed the model's own output at every step t >= 1 (greedy when
        `opts.sample_from == 'argmax'`), ignoring `probability`.

    Returns:
      DecoderOutput.
    """
    batch, steps = gold_inputs.shape
    k_emb, _, _, k_aux = _kernel_parts(params["layers"][0], sizes)
    bias = params["layers"][0]["input"]["bias"]
    gold_emb = encoders.embed(params["embed"], gold_inputs)  # [B, T, E]
    gold_proj = gold_emb @ k_emb + bias  # [B, T, G*H], hoisted out of the scan
    aux_proj = None if aux_inputs is None else jnp.swapaxes(aux_inputs @ k_aux, 0, 1)
    memory = _prepare_memory(params, opts, sizes, encoder_outputs, source_mask, fixed_inputs)

    vocab = params["out"]["kernel"].shape[-1]
    out_dim = params["out"]["kernel"].shape[0]
    dtype = gold_proj.dtype
    carry = (list(initial_state), jnp.zeros((batch, vocab), dtype), jnp.zeros((batch, out_dim), dtype))
    xs = (jnp.arange(steps), jnp.swapaxes(gold_proj, 0, 1), aux_proj, jax.random.split(rng, steps))

    def body(carry, xs):
        return _step(params, opts, sizes, memory, probability, free_running, carry, xs)

    _, (logits, sample_ids, fed, weights) = jax.lax.scan(body, carry, xs)
    logits = jnp.swapaxes(logits, 0, 1)  # [B, T, V]
    sample_ids = jnp.swapaxes(sample_ids, 0, 1)  # [B, T]
    fed = jnp.swapaxes(fed, 0, 1)  # [B, T]
    if target_lengths is None:
        target_lengths = jnp.full((batch,), steps, jnp.int32)
    positions = jnp.arange(steps)[None, :]
    eligible = (positions >= 1) & (positions < target_lengths[:, None])  # [B, T]
    fraction = jnp.sum(fed & eligible) / jnp.maximum(jnp.sum(eligible), 1)
    attn = None if weights is None else jnp.swapaxes(weights, 0, 1)  # [B, T, S]
    return DecoderOutput(logits, sample_ids, fraction.astype(jnp.float32), attn)
