"""The decoder: one step, and its unroll over T steps with scheduled sampling.

At step t the decoder reads an input (the gold token's embedding, or what the model feeds back)
and, depending on the model, the attention context over the encoder outputs (`Dk`), a fixed
conditioning vector from the bridge (`D`) and auxiliary inputs (`A`), all concatenated. Layer 0's
input projection is linear in that concatenation, so each part has its own rows of the kernel
(`KernelParts`): what is known before the loop (gold tokens, auxiliary inputs, the fixed vector)
is projected for all steps at once, and a step projects only what it learns inside the loop.

Scheduled sampling (Bengio et al. 2015; TF's ScheduledEmbeddingTrainingHelper and
ScheduledOutputTrainingHelper): at every step t >= 1 an independent Bernoulli draw per example
with probability `p` decides whether the input is the gold token or the model's previous output:
- `embedding` mode: a token id drawn from step t-1's logits (argmax or categorical at a
  temperature), embedded by the decoder embedding; no gradient through the discrete choice;
- `output` mode: step t-1's logits (its output after the output layer, what TF's BasicDecoder
  hands its helper) through a next-inputs function (sampling.NEXT_INPUTS); the gradient into
  those logits is stopped unless `output_gradient` is set (TF's helper lets it flow; Bengio et
  al. treat the fed-back input as a constant), while the function's own parameters (and the
  embedding that `softmax_embedding` reads) learn from it either way.
Step 0 always reads BOS. Free running feeds every step t >= 1 what training's feedback fed: the
argmax token's embedding in `embedding` mode, the next-inputs vector in `output` mode.

Keys: the decoder key is split into one key per step, and each step key into (choose, token,
dropout): the Bernoulli draw, the fed-back token's draw from the previous logits, the dropout
masks (tests/reference.py restates this protocol).

`step` is the model: training, greedy decoding and beam search all run it. `scan` unrolls it
with `lax.scan`; `fast_unroll.scan` is the same function for embedding-mode training with a
hand-written backward pass, and the tests hold both to tests/reference.py.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.models import attention as attention_lib
from s2s_jax.models import cells, encoders, precision, sampling
from s2s_jax.models.cells import dense, dense_init

FEEDS = ("scheduled", "teacher_forcing", "free_running")  # what a step t >= 1 reads


class DecoderOptions(NamedTuple):
    """Static (hashable) decoder settings, resolved from registry names outside jit."""

    cell: cells.Cell
    attention: attention_lib.Attention | None  # None: no attention
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
    attention: jax.Array | None  # [B, T, S] or None


def init(
    rng,
    opts: DecoderOptions,
    vocab: int,
    hidden: int,
    layers: int,
    sizes: InputSizes,
    key_dim: int,
    attn_dim: int,
    attention_normalize: bool,
) -> dict:
    """Decoder parameters: embedding, cell stack, attention, output layer, next-inputs function."""
    k_emb, k_stack, k_attn, k_out, k_next = jax.random.split(rng, 5)
    params = {
        "embed": encoders.embed_init(k_emb, vocab, sizes.emb),
        "layers": cells.stack_init(opts.cell, k_stack, sum(sizes), hidden, layers),
        "out": dense_init(k_out, hidden + sizes.context, vocab, use_bias=True),
    }
    if opts.attention is not None:
        params["attention"] = opts.attention.init(
            k_attn, hidden, key_dim, attn_dim, attention_normalize
        )
    if opts.sampling_mode == "output":
        params["next_inputs"] = sampling.NEXT_INPUTS[opts.next_inputs].init(
            k_next, vocab, sizes.emb
        )
    return params


class KernelParts(NamedTuple):
    """Layer 0's input kernel [E + Dk + D + A, G*H], split by rows into its inputs' parts."""

    w_emb: jax.Array  # [E, G*H] the token embedding (or fed-back vector)
    w_ctx: jax.Array  # [Dk, G*H] the attention context
    w_fixed: jax.Array  # [D, G*H] the bridge's fixed vector
    w_aux: jax.Array  # [A, G*H] the auxiliary inputs


def kernel_parts(layer0, sizes: InputSizes) -> KernelParts:
    kernel = layer0["input"]["kernel"]
    bounds = [sizes.emb, sizes.emb + sizes.context, sizes.emb + sizes.context + sizes.fixed]
    return KernelParts(*jnp.split(kernel, bounds, axis=0))


class Memory(NamedTuple):
    """What every step reads from the encoder; fields are None when unused."""

    keys: jax.Array | None  # [B, S, Dk] encoder outputs
    prepared: jax.Array | None  # [B, S, A'] attention.prepare(keys), once per batch
    mask: jax.Array | None  # [B, S] source mask
    fixed_proj: jax.Array | None  # [B, G*H] the fixed vector's projection, once per batch
    w_ctx: jax.Array | None  # [Dk, G*H] the context's rows of layer 0's kernel


def prepare_memory(params, opts, sizes, encoder_outputs, source_mask, fixed_inputs) -> Memory:
    """What every step reads and no step changes, computed once per batch."""
    parts = kernel_parts(params["layers"][0], sizes)
    keys = prepared = mask = fixed_proj = w_ctx = None
    if opts.attention is not None:
        keys, mask, w_ctx = encoder_outputs, source_mask, parts.w_ctx
        prepared = opts.attention.prepare(params["attention"], keys)
    if fixed_inputs is not None:
        fixed_proj = precision.dot(fixed_inputs, parts.w_fixed)
    return Memory(keys, prepared, mask, fixed_proj, w_ctx)


def attend(attn, params, query, memory: Memory):
    """The attention context [B, Dk] and weights [B, S] of one step's query [B, H]."""
    return attention_lib.attend(attn, params, query, memory.keys, memory.prepared, memory.mask)


def step(
    params,
    opts: DecoderOptions,
    sizes: InputSizes,
    memory: Memory,
    state,
    x_proj,
    *,
    rng=None,
    attend_fn: Callable = attend,
):
    """One decoder step.

    Args:
      params: from `init`; opts, sizes: the model's.
      memory: from `prepare_memory`.
      state: per layer, the cell's carry tuple of [B, H] arrays.
      x_proj: [B, G*H] layer 0's projection of this step's input (embedding or fed-back vector,
        with its bias and the auxiliary inputs' projection).
      rng: the step's dropout key (None: no dropout).
      attend_fn: `attend` or an equal function (fast_unroll's defers two of its gradients).

    Returns:
      (state, out [B, O] the output layer's input: the top h, and the context with attention,
      attention weights [B, S] or None).
    """
    weights = context = None
    if opts.attention is not None:
        query = state[-1][-1]  # the top layer's h after the previous step: [B, H]
        context, weights = attend_fn(opts.attention, params["attention"], query, memory)
        x_proj = x_proj + precision.dot(context, memory.w_ctx)
    if memory.fixed_proj is not None:
        x_proj = x_proj + memory.fixed_proj
    state, h = cells.stack_step(
        opts.cell,
        params["layers"],
        state,
        None,
        x_proj0=x_proj,
        dropout_rate=opts.dropout_rate,
        rng=rng if opts.dropout_rate > 0 else None,
    )
    out = h if context is None else jnp.concatenate([h, context], axis=-1)  # [B, O]
    return state, out, weights


def project_tokens(params, sizes: InputSizes, tokens):
    """Layer 0's projection of token ids [...]: [..., G*H] (embedding, its kernel rows, bias)."""
    w_emb = kernel_parts(params["layers"][0], sizes).w_emb
    embedded = encoders.embed(params["embed"], tokens)
    return precision.dot(embedded, w_emb) + params["layers"][0]["input"]["bias"]


def feed_mask(feed: str, key, probability, batch: int, t):
    """[B] bool: which examples read their own previous output at step t (never at t = 0)."""
    if feed == "teacher_forcing":
        return jnp.zeros((batch,), bool)
    if feed == "free_running":
        return jnp.broadcast_to(t > 0, (batch,))
    return sampling.choose_sampled(key, probability, batch) & (t > 0)


def feedback(params, opts: DecoderOptions, sizes: InputSizes, prev_logits, key):
    """What a step that reads the model's own output reads, from the previous logits [B, V]:
    (its layer-0 projection [B, G*H], the token it stands for [B])."""
    if opts.sampling_mode == "embedding":
        tokens = sampling.sample_tokens(
            key, jax.lax.stop_gradient(prev_logits), opts.sample_from, opts.temperature
        )
        return project_tokens(params, sizes, tokens), tokens
    # Only the previous step's output is a constant: the next-inputs function's parameters and
    # the embedding it may read still learn from the fed-back vector.
    source = prev_logits if opts.output_gradient else jax.lax.stop_gradient(prev_logits)
    fed_vec = sampling.NEXT_INPUTS[opts.next_inputs].apply(
        params.get("next_inputs"), source, params["embed"]["embedding"], opts.temperature
    )  # [B, E]
    w_emb = kernel_parts(params["layers"][0], sizes).w_emb
    bias = params["layers"][0]["input"]["bias"]
    return precision.dot(fed_vec, w_emb) + bias, sampling.argmax(prev_logits)


def scan(params, opts, sizes, memory, initial_state, gold_inputs, aux_proj, rng, probability, feed):
    """`step` under `lax.scan`, each step choosing its input from the previous step's logits.

    gold_inputs: [B, T]; aux_proj: [T, B, G*H] or None. Returns (logits [B, T, V], sample_ids
    [B, T], fed [T, B], weights [T, B, S] or None).
    """
    batch, steps = gold_inputs.shape
    gold_proj = project_tokens(params, sizes, gold_inputs.T)  # [T, B, G*H], hoisted
    vocab = params["out"]["kernel"].shape[-1]

    def body(carry, xs):
        state, prev_logits = carry
        t, gold_t, aux_t, key = xs
        k_choose, k_token, k_dropout = jax.random.split(key, 3)
        fed = feed_mask(feed, k_choose, probability, batch, t)  # [B]
        if feed == "teacher_forcing":
            x_proj, sample_ids = gold_t, jnp.full((batch,), -1, jnp.int32)
        else:
            fed_proj, tokens = feedback(params, opts, sizes, prev_logits, k_token)
            x_proj = jnp.where(fed[:, None], fed_proj, gold_t)  # [B, G*H]
            sample_ids = jnp.where(fed, tokens, -1)
        if aux_t is not None:
            x_proj = x_proj + aux_t
        state, out, weights = step(params, opts, sizes, memory, state, x_proj, rng=k_dropout)
        logits = dense(params["out"], out)  # [B, V]
        return (state, logits), (logits, sample_ids, fed, weights)

    carry = (list(initial_state), jnp.zeros((batch, vocab), gold_proj.dtype))
    xs = (jnp.arange(steps), gold_proj, aux_proj, jax.random.split(rng, steps))
    _, (logits, sample_ids, fed, weights) = jax.lax.scan(body, carry, xs)
    return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(sample_ids, 0, 1), fed, weights


def unroll(
    params,
    opts: DecoderOptions,
    sizes: InputSizes,
    initial_state,
    gold_inputs,
    rng,
    probability,
    *,
    feed: str = "scheduled",
    scan_fn: Callable = scan,
    encoder_outputs=None,
    source_mask=None,
    fixed_inputs=None,
    aux_inputs=None,
    target_lengths=None,
) -> DecoderOutput:
    """Runs the decoder over T steps.

    Args:
      params, opts, sizes: from `init` and the model.
      initial_state: per layer, the carry tuples from the bridge.
      gold_inputs: `[B, T]` gold input ids (BOS, then the targets shifted right).
      rng: the decoder key (module docstring).
      probability: sampling probability, scalar or `[B]` (traced: changing it never recompiles);
        read with `feed="scheduled"` only.
      feed: `scheduled` (scheduled sampling at `probability`), `teacher_forcing` (gold inputs
        only, known when tracing: no draws, no logits inside the loop) or `free_running` (every
        step t >= 1 reads the model's own output; greedy with `opts.sample_from == 'argmax'`).
      scan_fn: `scan`, or an implementation of the same function (`fast_unroll.scan`).
      encoder_outputs, source_mask: `[B, S, Dk]`, `[B, S]` for attention.
      fixed_inputs: `[B, D]` vector concatenated to every input (concat_inputs bridge).
      aux_inputs: optional `[B, T, A]` concatenated to every input, gold or fed back.
      target_lengths: `[B]` real target lengths (with EOS) for the sampled fraction.
    """
    if feed not in FEEDS:
        raise ValueError(f"unknown feed {feed!r}; choose one of {FEEDS}")
    batch, steps = gold_inputs.shape
    aux_proj = None
    if aux_inputs is not None:
        w_aux = kernel_parts(params["layers"][0], sizes).w_aux
        aux_proj = precision.dot(jnp.swapaxes(aux_inputs, 0, 1), w_aux)  # [T, B, G*H]
    memory = prepare_memory(params, opts, sizes, encoder_outputs, source_mask, fixed_inputs)
    logits, sample_ids, fed, weights = scan_fn(
        params, opts, sizes, memory, initial_state, gold_inputs, aux_proj, rng, probability, feed
    )
    if target_lengths is None:
        target_lengths = jnp.full((batch,), steps, jnp.int32)
    positions = jnp.arange(steps)[None, :]
    eligible = (positions >= 1) & (positions < target_lengths[:, None])  # [B, T]
    fraction = jnp.sum(jnp.swapaxes(fed, 0, 1) & eligible) / jnp.maximum(jnp.sum(eligible), 1)
    attn = None if weights is None else jnp.swapaxes(weights, 0, 1)  # [B, T, S]
    return DecoderOutput(logits, sample_ids, fraction.astype(jnp.float32), attn)


def token_step(params, opts: DecoderOptions, sizes: InputSizes, memory: Memory):
    """The decoder as beam.search's step function: `(state, tokens [N]) -> (state, log-probs
    [N, V])`, every row a hypothesis (memory's leaves repeated to match)."""

    def step_fn(state, tokens):
        state, out, _ = step(
            params, opts, sizes, memory, state, project_tokens(params, sizes, tokens)
        )
        return state, jax.nn.log_softmax(dense(params["out"], out), axis=-1)

    return step_fn
