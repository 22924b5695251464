"""`decoders.scan` for embedding-mode training, with a hand-written backward pass.

The same function as `decoders.scan` (tests/test_decoders.py holds both to tests/reference.py,
values and gradients), built around the same `decoders.step`; it only moves work out of the
time loop:
- the Bernoulli draws of all steps are made before the loop (they depend on keys only), so the
  loop knows which steps feed anything back. The output layer runs inside the loop only on a
  step whose logits the next step samples from (`lax.cond`); with teacher forcing it never
  does, and the logits of all steps come from one [B*T, O] x [O, V] matmul after the loop;
- the logits inside the loop only choose a discrete token, so they carry no gradient. The loss
  gradient of the output layer is two big matmuls after the loop (`_output_logits`), never a
  per-step [O, V] accumulation;
- every step's input projection (gold or fed back) is a constant inside the loop; its gradient
  (embedding rows, E-part of the kernel, bias) is computed after the loop from the tokens the
  steps read, in big matmuls (`_make_loop`'s custom VJP), and so are the gradients of an LSTM's
  layer-0 recurrent kernel (as for the encoder, see encoders._lstm_scan), of the attention
  context's input kernel, of the attention query projection and of the keys (`_attend`);
- a sampled token costs one exp pass over its row (sampling.categorical, inverse-CDF sampling),
  and argmax two plain reductions (sampling.argmax, equal to jnp.argmax).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.models import attention as attention_lib
from s2s_jax.models import decoders, encoders, precision, sampling

sg = jax.lax.stop_gradient


class _Differentiable(NamedTuple):
    """The loop's inputs that carry gradient (the custom VJP completes some of them)."""

    layers: list  # the decoder's cell stack parameters
    attention: dict | None  # attention parameters
    state: list  # the initial state
    base: jax.Array  # [T, B, G*H] the projected gold input where gold is read, else 0
    aux: jax.Array | None  # [T, B, G*H] the auxiliary inputs' projection
    keys: jax.Array | None  # [B, S, Dk]
    prepared: jax.Array | None  # [B, S, A']
    fixed: jax.Array | None  # [B, G*H] the fixed vector's projection
    probes: dict | None  # zeros added to each step's projected query and context (`_attend`)


class _Constant(NamedTuple):
    fed: jax.Array  # [T, B] bool: the step reads the model's own token
    need: jax.Array | None  # [T] bool: compute step t's logits in the loop (None: never)
    token_key: jax.Array  # [T] keys: the key that samples from step t's logits
    dropout_key: jax.Array  # [T] keys
    mask: jax.Array | None  # [B, S]
    out_kernel: jax.Array  # [O, V], a stop-gradient copy
    out_bias: jax.Array  # [V]


def _attend(attn, params, query, memory, probes):
    """`decoders.attend` inside the loop, leaving two gradients for after it.

    The query projection's parameters and the keys are constants here: their per-step gradients
    would be a [Dq, Aq] and a [B, S, Dk] product added up in the backward loop every step.
    Instead the zero `probes` added to the projected query and to the context give the loop's
    gradients with respect to both, and `_attention_gradients` turns them into those of the
    parameters and keys with one matmul each over all steps.
    """
    projected = attn.project(sg(params), query) + probes["query"]  # [B, Aq]
    context, weights = attention_lib.attend_projected(
        attn, params, projected, sg(memory.keys), memory.prepared, memory.mask
    )
    return context + probes["context"], weights  # [B, Dk], [B, S]


def _attention_gradients(attn, params, queries, weights, d_probes, d_params):
    """Adds the gradients `_attend` left out: the query projection's, from every step's query
    [T, B, H] and projected-query gradient, and the keys' [B, S, Dk], from every step's weights
    [T, B, S] and context gradient. Returns (attention params' gradient, keys' gradient)."""
    _, project_vjp = jax.vjp(lambda p: attn.project(p, queries), params)  # [T, B, Aq]
    d_params = jax.tree_util.tree_map(jnp.add, d_params, project_vjp(d_probes["query"])[0])
    return d_params, jnp.einsum("tbs,tbd->bsd", weights, d_probes["context"])


def _loop(opts, sizes, embed_params, diff: _Differentiable, const: _Constant):
    """The loop over precomputed draws: `decoders.step` with constant input projections.

    embed_params: (embedding [V, E], w_emb [E, G*H], bias [G*H]), the projection of a fed-back
    token. Returns ((outs [T, B, O], weights [T, B, S] or None), (logits [B, T, V] (zero where
    not needed, None with teacher forcing), next_tokens [T, B] (sampled from step t's logits for
    step t + 1), h0 [T, B, H] (layer 0's h after every step, LSTM only) or None)).
    """
    table, w_emb, bias = embed_params
    # Constants here, their gradients come after the loop (`_make_loop`): the context's rows of
    # layer 0's input kernel and, for an LSTM, layer 0's recurrent kernel.
    layer0 = dict(diff.layers[0])
    if opts.cell.linear_recurrence:
        layer0["recurrent"] = jax.tree_util.tree_map(sg, layer0["recurrent"])
    params = {"layers": [layer0, *diff.layers[1:]], "attention": diff.attention}
    w_ctx = None if not sizes.context else sg(decoders.kernel_parts(layer0, sizes).w_ctx)
    memory = decoders.Memory(diff.keys, diff.prepared, const.mask, diff.fixed, w_ctx)
    steps, batch = diff.base.shape[:2]
    vocab = const.out_kernel.shape[-1]
    dtype = diff.base.dtype
    never = const.need is None  # teacher forcing, known when tracing: nothing to sample

    def sample(out, key, t, all_logits):
        logits = precision.dot(out, const.out_kernel) + const.out_bias  # [B, V]
        tokens = sampling.sample_tokens(key, logits, opts.sample_from, opts.temperature)
        fed_proj = precision.dot(encoders.embed({"embedding": table}, tokens), w_emb) + bias
        # Written in place into [B, T, V], the layout of the result: no transpose afterwards.
        all_logits = jax.lax.dynamic_update_slice_in_dim(all_logits, logits[:, None], t, 1)
        return tokens, fed_proj, all_logits

    def skip(out, key, t, all_logits):
        del out, key, t
        return (
            jnp.zeros((batch,), jnp.int32),
            jnp.zeros((batch, w_emb.shape[-1]), dtype),
            all_logits,
        )

    def body(carry, xs):
        state, fed_proj, all_logits = carry
        # Exactly the fed projection or the gold one: x + 0 == x.
        x_proj = xs["base"] if never else jnp.where(xs["fed"][:, None], fed_proj, 0.0) + xs["base"]
        if xs["aux"] is not None:
            x_proj = x_proj + xs["aux"]

        def attend_fn(attn, attn_params, query, memory):
            return _attend(attn, attn_params, query, memory, xs["probes"])

        state, out, weights = decoders.step(
            params, opts, sizes, memory, state, x_proj, rng=xs["dropout_key"], attend_fn=attend_fn
        )
        if never:
            tokens = jnp.zeros((batch,), jnp.int32)
        else:
            tokens, fed_proj, all_logits = jax.lax.cond(
                xs["need"], sample, skip, sg(out), xs["token_key"], xs["t"], all_logits
            )
        h0 = state[0][-1] if opts.cell.linear_recurrence else None
        return (state, fed_proj, all_logits), ((out, weights), (tokens, h0))

    # The [B, T, V] buffer the loop writes its logits into: not even allocated when nothing can
    # be sampled.
    carry = (
        list(diff.state),
        None if never else jnp.zeros((batch, w_emb.shape[-1]), dtype),
        None if never else jnp.zeros((batch, steps, vocab), dtype),
    )
    xs = {
        "t": jnp.arange(steps),
        "fed": const.fed,
        "base": diff.base,
        "aux": diff.aux,
        "need": const.need,
        "token_key": const.token_key,
        "dropout_key": const.dropout_key,
        "probes": diff.probes,
    }
    (_, _, all_logits), (outs, (next_tokens, h0)) = jax.lax.scan(body, carry, xs)
    return outs, (all_logits, next_tokens, h0)


def _input_gradients(embed_params, inputs, d_proj):
    """Gradients of every step's input projection `embed(inputs) @ w_emb + bias`.

    inputs: [T, B] the token each step read (gold or fed back); d_proj: [T, B, G*H].
    """
    table, w_emb, _ = embed_params
    x = encoders.embed({"embedding": table}, inputs)  # [T, B, E]
    d_w = precision.einsum("tbe,tbg->eg", x, d_proj)
    d_table = jnp.zeros_like(table).at[inputs].add(precision.dot(d_proj, w_emb.T))
    return d_table, d_w, jnp.sum(d_proj, axis=(0, 1))


def _make_loop(opts, sizes):
    """`_loop` with the gradients it leaves out computed after it.

    Inside the loop every input projection, gold or fed back, is a constant, so the backward loop
    neither scatter-adds into the [V, E] embedding nor accumulates the [E, G*H] kernel per step.
    The loop's gradient with respect to `base` is the gradient of each step's input projection
    (fed rows included: x = where(fed, fed_proj, 0) + base), and `_input_gradients` turns it
    into parameter gradients with the tokens the steps actually read, in big matmuls. For an
    LSTM it is also the gradient of layer 0's gates, which gives that layer's recurrent kernel
    gradient as one matmul with the layer's h of the previous steps. For any cell it is the
    gradient of the attention context's projection, whose kernel rows get theirs as one matmul
    with the contexts of all steps instead of a [Dk, G*H] product added up every step.

    The backward pass is traced after the forward one has left its `precision.matmuls`, so it
    runs in the precision captured here, when the forward pass is traced.
    """
    mode = precision.current()

    @jax.custom_vjp
    def loop(embed_params, diff, const, gold):
        del gold
        return _loop(opts, sizes, embed_params, diff, const)

    def fwd(embed_params, diff, const, gold):
        outs, vjp_fn, aux = jax.vjp(
            lambda d: _loop(opts, sizes, embed_params, d, const), diff, has_aux=True
        )
        initial = (diff.state[0][-1], diff.state[-1][-1])  # layer 0's and the top layer's h
        kernel = diff.layers[0]["input"]["kernel"]
        residuals = (
            vjp_fn,
            embed_params,
            aux[1],
            aux[2],
            const.fed,
            gold,
            outs,
            initial,
            kernel,
            diff.attention,
        )
        return (outs, aux), residuals

    def bwd(res, cts):
        with precision.matmuls(mode):
            return _bwd(res, cts)

    def _bwd(res, cts):
        (
            vjp_fn,
            embed_params,
            next_tokens,
            h0,
            fed,
            gold,
            (outs, weights),
            initial,
            kernel,
            attention_params,
        ) = res
        (d_diff,) = vjp_fn(cts[0])  # the loop's own logits and tokens carry no gradient
        d_base = d_diff.base  # [T, B, G*H], the gradient of every step's layer-0 input projection
        d_layer0 = d_diff.layers[0]
        if opts.attention is not None:
            # Step t's query is the top layer's h after step t - 1: the head of its out.
            tops = outs[..., : outs.shape[-1] - sizes.context]  # [T, B, H]
            queries = jnp.concatenate([initial[1][None], tops[:-1]])  # [T, B, H]
            d_attention, d_keys = _attention_gradients(
                opts.attention, attention_params, queries, weights, d_diff.probes, d_diff.attention
            )
            d_diff = d_diff._replace(attention=d_attention, keys=d_keys, probes=None)
        if sizes.context:  # outs [T, B, H + Dk] end with the attention contexts
            contexts = outs[..., outs.shape[-1] - sizes.context :]
            d_ctx = precision.einsum("tbc,tbg->cg", contexts, d_base)
            _, ctx_vjp = jax.vjp(
                lambda k: decoders.kernel_parts({"input": {"kernel": k}}, sizes).w_ctx, kernel
            )
            d_layer0["input"]["kernel"] = d_layer0["input"]["kernel"] + ctx_vjp(d_ctx)[0]
        if h0 is not None:
            h_prev = jnp.concatenate([initial[0][None], h0[:-1]])  # [T, B, H]
            d_layer0["recurrent"]["kernel"] = precision.einsum("tbh,tbg->hg", h_prev, d_base)
        fed_tokens = jnp.concatenate([jnp.zeros_like(next_tokens[:1]), next_tokens[:-1]])
        inputs = jnp.where(fed, fed_tokens, gold)  # [T, B]
        d_embed = _input_gradients(embed_params, inputs, d_base)
        # `base` is a constant: its gradient went to the embedding parameters.
        return d_embed, d_diff._replace(base=None), None, None

    loop.defvjp(fwd, bwd)
    return loop


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _output_logits(mode, out, kernel, bias, loop_logits, use_loop):
    """Logits [B, T, V] of out [B, T, O]: the ones the loop computed when it did so for every
    step, else one matmul (always, when `loop_logits` is None). Either way the gradient is two
    big matmuls, in precision `mode`."""
    logits = lambda: precision.dot(out, kernel, mode) + bias  # noqa: E731
    if loop_logits is None:
        return logits()
    return jax.lax.cond(use_loop, lambda: loop_logits, logits)


def _output_logits_fwd(mode, out, kernel, bias, loop_logits, use_loop):
    return _output_logits(mode, out, kernel, bias, loop_logits, use_loop), (out, kernel)


def _output_logits_bwd(mode, res, g):
    out, kernel = res
    d_out = precision.dot(g, kernel.T, mode)  # [B, T, O]
    d_kernel = precision.einsum("bto,btv->ov", out, g, mode)
    return d_out, d_kernel, jnp.sum(g, axis=(0, 1)), None, None


_output_logits.defvjp(_output_logits_fwd, _output_logits_bwd)


def _attention_probes(opts, params, initial_state, memory, steps):
    """The zero probes of `_attend`: [T, B, Aq] for the projected query, [T, B, Dk] for the
    context; None without attention."""
    if opts.attention is None:
        return None
    query = initial_state[-1][-1]  # [B, H]
    projected = jax.eval_shape(opts.attention.project, params["attention"], query)
    batch, _, key_dim = memory.keys.shape
    return {
        "query": jnp.zeros((steps, *projected.shape), projected.dtype),
        "context": jnp.zeros((steps, batch, key_dim), memory.keys.dtype),
    }


def scan(params, opts, sizes, memory, initial_state, gold_inputs, aux_proj, rng, probability, feed):
    """`decoders.scan` in embedding mode (same arguments, same results)."""
    if opts.sampling_mode != "embedding":
        raise ValueError("fast_unroll.scan implements the embedding mode; use decoders.scan")
    batch, steps = gold_inputs.shape
    layer0 = params["layers"][0]
    embed_params = (
        params["embed"]["embedding"],
        decoders.kernel_parts(layer0, sizes).w_emb,
        layer0["input"]["bias"],
    )
    table, w_emb, bias = map(sg, embed_params)  # their gradient comes from _make_loop
    gold = gold_inputs.T  # [T, B]
    gold_embedded = encoders.embed({"embedding": table}, gold)  # [T, B, E]
    gold_proj = precision.dot(gold_embedded, w_emb) + bias  # [T, B, G*H], hoisted

    step_keys = jax.vmap(lambda k: jax.random.split(k, 3))(jax.random.split(rng, steps))
    k_choose, k_token, k_dropout = step_keys[:, 0], step_keys[:, 1], step_keys[:, 2]
    t = jnp.arange(steps)
    forced = feed == "teacher_forcing"
    fed = jax.vmap(lambda k, t: decoders.feed_mask(feed, k, probability, batch, t))(k_choose, t)
    any_fed = jnp.any(fed, axis=1)  # [T]
    # Step t needs its logits in the loop when step t + 1 samples from them; the last step does
    # as the one before it, so a fully sampled run needs no output matmul after the loop.
    need = None if forced else jnp.concatenate([any_fed[1:], any_fed[-1:]])  # [T]
    token_key = jnp.concatenate([k_token[1:], k_token[-1:]])  # the key of step t + 1's draw

    out_kernel, out_bias = params["out"]["kernel"], params["out"]["bias"]
    diff = _Differentiable(
        layers=params["layers"],
        attention=params.get("attention"),
        state=list(initial_state),
        base=jnp.where(fed[..., None], 0.0, gold_proj),
        aux=aux_proj,
        keys=memory.keys,
        prepared=memory.prepared,
        fixed=memory.fixed_proj,
        probes=_attention_probes(opts, params, initial_state, memory, steps),
    )
    const = _Constant(fed, need, token_key, k_dropout, memory.mask, sg(out_kernel), sg(out_bias))
    (outs, weights), (loop_logits, next_tokens, _) = _make_loop(opts, sizes)(
        embed_params, diff, const, gold
    )
    use_loop = None if forced else jnp.all(need)
    loop_logits = None if forced else sg(loop_logits)
    logits = _output_logits(
        precision.current(), jnp.swapaxes(outs, 0, 1), out_kernel, out_bias, loop_logits, use_loop
    )
    tokens = jnp.concatenate([jnp.zeros_like(next_tokens[:1]), next_tokens[:-1]])  # [T, B]
    sample_ids = jnp.swapaxes(jnp.where(fed, tokens, -1), 0, 1)  # [B, T]
    return logits, sample_ids, fed, weights
