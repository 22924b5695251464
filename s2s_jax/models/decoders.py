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
- `output` mode: step t-1's logits (its output after the output layer, what TF's BasicDecoder
  hands its helper) through a next-inputs function (sampling.NEXT_INPUTS); the gradient into
  those logits is stopped unless `output_gradient` is set (TF's helper lets it flow; Bengio et
  al. treat the fed-back input as a constant), while the function's own parameters (and the
  embedding that `softmax_embedding` reads) learn from it either way.
Step 0 always reads BOS. Free-running decoding (`free_running`) feeds every step t >= 1 what
training's feedback fed: the argmax token's embedding in `embedding` mode, the next-inputs
vector in `output` mode.

How the embedding-mode unroll (training, and greedy decoding) is kept fast; every choice below
leaves the results of the straightforward loop (tests/reference.py) unchanged:
- the Bernoulli draws of all steps are made before the loop (they depend on keys only), so the
  loop knows which steps feed anything back. The output layer runs inside the loop only on a
  step whose logits the next step samples from (`lax.cond`); with teacher forcing it never
  does, and the logits of all steps come from one [B*T, O] x [O, V] matmul after the loop;
- the logits inside the loop only choose a discrete token, so they carry no gradient. The loss
  gradient of the output layer is two big matmuls after the loop (`_output_logits`), never a
  per-step [O, V] accumulation;
- every step's input projection (gold or fed back) is a constant inside the loop; its gradient
  (embedding rows, E-part of the kernel, bias) is computed after the loop from the tokens the
  steps read, in big matmuls (`_make_decode_scan`'s custom VJP), and so are the gradients of an
  LSTM's layer-0 recurrent kernel (as for the encoder, see encoders._lstm_scan), of the
  attention context's input kernel, of the attention query projection and of the keys
  (`_attend`);
- a sampled token costs one exp pass over its row (sampling.categorical, inverse-CDF sampling),
  and argmax two plain reductions (sampling.argmax, equal to jnp.argmax).
"""
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from s2s_jax.models import attention as attention_lib
from s2s_jax.models import cells, encoders, sampling
from s2s_jax.models.cells import dense, dense_init


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
        params["next_inputs"] = sampling.NEXT_INPUTS[opts.next_inputs].init(k_next, vocab,
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


# --- The generic step (output mode) ----------------------------------------------------------
def _step(params, opts: DecoderOptions, sizes: InputSizes, memory: _Memory, probability,
          free_running: bool, carry, xs):
    """One decoder step of the output-mode scan, where the fed-back vector may carry gradient.

    carry: (state, prev_logits [B, V]); xs: (t, gold_proj [B, G*H], aux_proj [B, G*H] or None,
    key).
    """
    state, prev_logits = carry
    t, gold_proj, aux_proj, key = xs
    k_choose, _, k_dropout = jax.random.split(key, 3)
    batch = gold_proj.shape[0]
    k_emb, k_ctx, _, _ = _kernel_parts(params["layers"][0], sizes)
    bias = params["layers"][0]["input"]["bias"]

    # Which examples feed their own previous output (never at t = 0, which reads BOS).
    if free_running:
        fed = jnp.broadcast_to(t > 0, (batch,))
    else:
        fed = sampling.choose_sampled(k_choose, probability, batch) & (t > 0)  # [B]
    tokens = sampling.argmax(prev_logits)
    # Only the previous step's output is a constant: the next-inputs function's parameters and
    # the embedding it may read still learn from the fed-back vector.
    source = prev_logits if opts.output_gradient else jax.lax.stop_gradient(prev_logits)
    fed_vec = sampling.NEXT_INPUTS[opts.next_inputs].apply(
        params.get("next_inputs"), source, params["embed"]["embedding"],
        opts.temperature)  # [B, E]
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
    return (state, logits), emitted


def _prepare_memory(params, opts, sizes, encoder_outputs, source_mask, fixed_inputs):
    _, _, k_fixed, _ = _kernel_parts(params["layers"][0], sizes)
    keys = prepared = mask = fixed_proj = None
    if opts.attention is not None:
        keys, mask = encoder_outputs, source_mask
        prepared = opts.attention.prepare(params["attention"], keys)  # hoisted: once per batch
    if fixed_inputs is not None:
        fixed_proj = fixed_inputs @ k_fixed  # [B, G*H]
    return _Memory(keys, prepared, mask, fixed_proj)


def _unroll_output_mode(params, opts, sizes, memory, initial_state, gold_inputs, aux_proj, rng,
                        probability, free_running):
    """The output-mode scan. Returns (logits [B,T,V], sample_ids [B,T], fed [T,B], weights)."""
    batch, steps = gold_inputs.shape
    k_emb = _kernel_parts(params["layers"][0], sizes)[0]
    bias = params["layers"][0]["input"]["bias"]
    gold_emb = encoders.embed(params["embed"], gold_inputs.T)  # [T, B, E]
    gold_proj = gold_emb @ k_emb + bias  # [T, B, G*H], hoisted out of the scan
    vocab = params["out"]["kernel"].shape[-1]
    carry = (list(initial_state), jnp.zeros((batch, vocab), gold_proj.dtype))
    xs = (jnp.arange(steps), gold_proj, aux_proj, jax.random.split(rng, steps))

    def body(carry, xs):
        return _step(params, opts, sizes, memory, probability, free_running, carry, xs)

    _, (logits, sample_ids, fed, weights) = jax.lax.scan(body, carry, xs)
    return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(sample_ids, 0, 1), fed, weights


# --- The embedding-mode unroll ---------------------------------------------------------------
def _decode_scan(opts: DecoderOptions, sizes: InputSizes, embed_params, diff, const):
    """The embedding-mode decoder loop over precomputed draws.

    Args:
      embed_params: (embedding [V, E], k_emb [E, G*H], bias [G*H]), the projection of an input
        token; constants here (the custom VJP of `_make_decode_scan` adds their gradient).
      diff: the differentiable inputs: `layers`, `attention` (params), `state` (initial),
        `base` [T, B, G*H] (the projected gold input where gold is read, else 0; its gradient is
        that of every step's input projection), `aux` [T, B, G*H] or None, `keys`, `prepared`,
        `fixed` [B, G*H] (memory, or None), `probes` (zeros added to every step's projected
        query [T, B, Aq] and context [T, B, Dk], whose gradients are theirs; see `_attend`).
      const: `fed` [T, B] bool, `need` [T] bool (compute this step's logits in the loop),
        `token_key` [T] (the key that samples from step t's logits), `dropout_key` [T], `mask`
        [B, S] or None, `out_kernel`, `out_bias` (stop-gradient copies).

    Returns:
      ((outs [T, B, O], weights [T, B, S] or None), (logits [B, T, V] (zero where not needed),
      next_tokens [T, B] (sampled from step t's logits for step t + 1), h0 [T, B, H] (layer 0's
      h after every step) or None)).
    """
    table, k_emb, bias = embed_params
    layers = diff["layers"]
    defer = _defers_recurrent_gradient(opts)
    if defer:  # layer 0's recurrent kernel is a constant here; see _make_decode_scan
        layer0 = dict(layers[0], recurrent=jax.tree_util.tree_map(jax.lax.stop_gradient,
                                                                   layers[0]["recurrent"]))
        layers = [layer0] + list(layers[1:])
    # A constant here: its gradient is one matmul after the loop (see _make_decode_scan).
    k_ctx = jax.lax.stop_gradient(_kernel_parts(diff["layers"][0], sizes)[1])
    # With an LSTM, whose gates are x_proj + h @ kernel, layer 0 takes [h, context] through one
    # [H + Dk, 4H] kernel: one matmul a step, and one in the backward loop, instead of two
    # (XLA:CPU runs the two side by side on one core each, slower than one after the other).
    merge = defer and opts.attention is not None
    if merge:
        layers[0] = dict(layers[0], recurrent={
            "kernel": jnp.concatenate([layers[0]["recurrent"]["kernel"], k_ctx])})
    steps, batch = diff["base"].shape[:2]
    vocab = const["out_kernel"].shape[-1]
    dtype = diff["base"].dtype

    def sample(out, key, t, all_logits):
        logits = out @ const["out_kernel"] + const["out_bias"]  # [B, V]
        tokens = sampling.sample_tokens(key, logits, opts.sample_from, opts.temperature)
        fed_proj = encoders.embed({"embedding": table}, tokens) @ k_emb + bias  # [B, G*H]
        # Written in place into [B, T, V], the layout of the result: no transpose afterwards.
        all_logits = jax.lax.dynamic_update_slice_in_dim(all_logits, logits[:, None], t, 1)
        return tokens, fed_proj, all_logits

    def skip(out, key, t, all_logits):
        del out, key, t
        return (jnp.zeros((batch,), jnp.int32), jnp.zeros((batch, k_emb.shape[-1]), dtype),
                all_logits)

    never = const["need"] is None  # teacher forcing known when tracing: nothing to sample

    def step(carry, xs):
        state, fed_proj, all_logits = carry
        # Exactly the fed projection or the gold one: x + 0 == x.
        x_proj = xs["base"] if never else jnp.where(xs["fed"][:, None], fed_proj, 0.0) + xs["base"]
        weights = None
        if opts.attention is not None:
            query = state[-1][-1]  # top layer's h from the previous step: [B, H]
            context, weights = _attend(opts.attention, diff["attention"], query, diff["keys"],
                                       diff["prepared"], const["mask"], xs["probes"])
            if not merge:
                x_proj = x_proj + context @ k_ctx
        if diff["fixed"] is not None:
            x_proj = x_proj + diff["fixed"]
        if xs["aux"] is not None:
            x_proj = x_proj + xs["aux"]
        rng = xs["dropout_key"] if opts.dropout_rate > 0 else None
        state_in = state
        if merge:  # the cell reads [h, context] where it reads h: [B, H + Dk]
            c0, h0_prev = state[0]
            state_in = [(c0, jnp.concatenate([h0_prev, context], axis=-1))] + list(state[1:])
        state, h = cells.stack_step(opts.cell, layers, state_in, None, x_proj0=x_proj,
                                    dropout_rate=opts.dropout_rate, rng=rng)
        out = h if opts.attention is None else jnp.concatenate([h, context], axis=-1)  # [B, O]
        if never:
            tokens = jnp.zeros((batch,), jnp.int32)
        else:
            tokens, fed_proj, all_logits = jax.lax.cond(
                xs["need"], sample, skip, jax.lax.stop_gradient(out), xs["token_key"], xs["t"],
                all_logits)
        h0 = state[0][-1] if defer else None
        return (state, fed_proj, all_logits), ((out, weights), (tokens, h0))

    # The [B, T, V] buffer the loop writes its logits into (61 MB at the benchmark's size, zeroed
    # every step): not even allocated when nothing can be sampled.
    carry = (list(diff["state"]), None if never else jnp.zeros((batch, k_emb.shape[-1]), dtype),
             None if never else jnp.zeros((batch, steps, vocab), dtype))
    xs = {"t": jnp.arange(steps), "fed": const["fed"], "base": diff["base"], "aux": diff["aux"],
          "need": const["need"], "token_key": const["token_key"],
          "dropout_key": const["dropout_key"], "probes": diff["probes"]}
    (_, _, all_logits), (outs, (next_tokens, h0)) = jax.lax.scan(step, carry, xs)
    return outs, (all_logits, next_tokens, h0)


def _attend(attn, params, query, keys, prepared, mask, probes):
    """`attention.attend` inside the decoder loop, leaving two gradients for after it.

    The query projection's parameters and the keys are constants here: their per-step gradients
    would be a [Dq, Aq] and a [B, S, Dk] product added up in the backward loop every step.
    Instead the zero `probes` added to the projected query and to the context give the loop's
    gradients with respect to both, and `_attention_gradients` turns them into those of the
    parameters and keys with one matmul each over all steps.
    """
    sg = jax.lax.stop_gradient
    projected = attn.project(sg(params), query) + probes["query"]  # [B, Aq]
    context, weights = attention_lib.attend_projected(attn, params, projected, sg(keys), prepared,
                                                      mask)
    return context + probes["context"], weights  # [B, Dk], [B, S]


def _attention_gradients(attn, params, queries, weights, d_probes, d_params):
    """Adds the gradients `_attend` left out: the query projection's, from every step's query
    [T, B, H] and projected-query gradient, and the keys' [B, S, Dk], from every step's weights
    [T, B, S] and context gradient. Returns (attention params' gradient, keys' gradient)."""
    _, project_vjp = jax.vjp(lambda p: attn.project(p, queries), params)  # [T, B, Aq]
    d_params = jax.tree_util.tree_map(jnp.add, d_params, project_vjp(d_probes["query"])[0])
    return d_params, jnp.einsum("tbs,tbd->bsd", weights, d_probes["context"])


def _defers_recurrent_gradient(opts: DecoderOptions) -> bool:
    """Whether layer 0's gates are x_proj0 + h_prev @ kernel (an LSTM): then the loop's gradient
    with respect to `base` is the gradient of those gates, and the kernel's gradient is one
    matmul after the loop (as encoders._lstm_scan does for the encoder)."""
    return opts.cell.step is cells.CELLS["lstm"].step


def _input_gradients(embed_params, inputs, d_proj):
    """Gradients of every step's input projection `embed(inputs) @ k_emb + bias`.

    inputs: [T, B] the token each step read (gold or fed back); d_proj: [T, B, G*H].
    """
    table, k_emb, _ = embed_params
    x = encoders.embed({"embedding": table}, inputs)  # [T, B, E]
    d_k = jnp.einsum("tbe,tbg->eg", x, d_proj)
    d_table = jnp.zeros_like(table).at[inputs].add(d_proj @ k_emb.T)
    return d_table, d_k, jnp.sum(d_proj, axis=(0, 1))


def _make_decode_scan(opts: DecoderOptions, sizes: InputSizes):
    """`_decode_scan` with the input projection's gradient computed after the loop.

    Inside the loop every input projection, gold or fed back, is a constant, so the backward loop
    neither scatter-adds into the [V, E] embedding nor accumulates the [E, G*H] kernel per step.
    The loop's gradient with respect to `base` is the gradient of each step's input projection
    (fed rows included: x = where(fed, fed_proj, 0) + base), and `_input_gradients` turns it
    into parameter gradients with the tokens the steps actually read, in big matmuls. For an
    LSTM it is also the gradient of layer 0's gates, which gives that layer's recurrent kernel
    gradient as one matmul with the layer's h of the previous steps. For any cell it is the
    gradient of the attention context's projection, whose kernel rows get theirs as one matmul
    with the contexts of all steps instead of a [Dk, G*H] product added up every step (attention
    at the benchmark size: 446-468 -> 429-440 ms a CPU step).
    """

    @jax.custom_vjp
    def decode_scan(embed_params, diff, const, gold):
        del gold
        return _decode_scan(opts, sizes, embed_params, diff, const)

    def fwd(embed_params, diff, const, gold):
        outs, vjp_fn, aux = jax.vjp(
            lambda d: _decode_scan(opts, sizes, embed_params, d, const), diff, has_aux=True)
        return (outs, aux), (vjp_fn, embed_params, aux[1], aux[2], diff["state"][0][-1],
                             const["fed"], gold, outs, diff["layers"][0]["input"]["kernel"],
                             diff["attention"], diff["state"][-1][-1])

    def bwd(res, cts):
        (vjp_fn, embed_params, next_tokens, h0, h0_initial, fed, gold, (outs, weights), kernel,
         attention_params, top_initial) = res
        (d_diff,) = vjp_fn(cts[0])  # the loop's own logits and tokens carry no gradient
        if opts.attention is not None:
            # Step t's query is the top layer's h after step t - 1: the head of its out.
            tops = outs[..., :outs.shape[-1] - sizes.context]  # [T, B, H]
            queries = jnp.concatenate([top_initial[None], tops[:-1]])  # [T, B, H]
            d_diff["attention"], d_diff["keys"] = _attention_gradients(
                opts.attention, attention_params, queries, weights, d_diff["probes"],
                d_diff["attention"])
            d_diff["probes"] = None  # zeros: their gradients went to the parameters and keys
        if sizes.context:  # outs [T, B, H + Dk] end with the attention contexts
            contexts = outs[..., outs.shape[-1] - sizes.context:]
            d_ctx = jnp.einsum("tbc,tbg->cg", contexts, d_diff["base"])
            _, ctx_vjp = jax.vjp(lambda k: _kernel_parts({"input": {"kernel": k}}, sizes)[1],
                                 kernel)
            d_input = d_diff["layers"][0]["input"]
            d_input["kernel"] = d_input["kernel"] + ctx_vjp(d_ctx)[0]
        if h0 is not None:
            h_prev = jnp.concatenate([h0_initial[None], h0[:-1]])  # [T, B, H]
            d_kernel = jnp.einsum("tbh,tbg->hg", h_prev, d_diff["base"])
            d_diff["layers"][0]["recurrent"]["kernel"] = d_kernel
        fed_tokens = jnp.concatenate([jnp.zeros_like(next_tokens[:1]), next_tokens[:-1]])
        inputs = jnp.where(fed, fed_tokens, gold)  # [T, B]
        d_embed = _input_gradients(embed_params, inputs, d_diff["base"])
        d_diff["base"] = None  # a constant: its gradient went to the embedding parameters
        return d_embed, d_diff, None, None

    decode_scan.defvjp(fwd, bwd)
    return decode_scan


@jax.custom_vjp
def _output_logits(out, kernel, bias, loop_logits, use_loop):
    """Logits [B, T, V] of out [B, T, O]: the ones the loop computed when it did so for every
    step, else one matmul (always, when `loop_logits` is None). Either way the gradient is two
    big matmuls."""
    if loop_logits is None:
        return out @ kernel + bias
    return jax.lax.cond(use_loop, lambda: loop_logits, lambda: out @ kernel + bias)


def _output_logits_fwd(out, kernel, bias, loop_logits, use_loop):
    return _output_logits(out, kernel, bias, loop_logits, use_loop), (out, kernel)


def _output_logits_bwd(res, g):
    out, kernel = res
    d_out = g @ kernel.T  # [B, T, O]
    d_kernel = jnp.einsum("bto,btv->ov", out, g)
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
    return {"query": jnp.zeros((steps, *projected.shape), projected.dtype),
            "context": jnp.zeros((steps, batch, key_dim), memory.keys.dtype)}


def _unroll_embedding_mode(params, opts, sizes, memory, initial_state, gold_inputs, aux_proj, rng,
                           probability, free_running):
    """The embedding-mode unroll. Returns (logits [B,T,V], sample_ids [B,T], fed [T,B], weights)."""
    batch, steps = gold_inputs.shape
    sg = jax.lax.stop_gradient
    embed_params = (params["embed"]["embedding"], _kernel_parts(params["layers"][0], sizes)[0],
                    params["layers"][0]["input"]["bias"])
    table, k_emb, bias = map(sg, embed_params)  # their gradient comes from _make_decode_scan
    gold = gold_inputs.T  # [T, B]
    gold_proj = encoders.embed({"embedding": table}, gold) @ k_emb + bias  # [T, B, G*H], hoisted

    step_keys = jax.vmap(lambda k: jax.random.split(k, 3))(jax.random.split(rng, steps))
    k_choose, k_token, k_dropout = step_keys[:, 0], step_keys[:, 1], step_keys[:, 2]
    t = jnp.arange(steps)
    # A Python 0 (train.py passes one when the schedule's cap is 0, evaluation always does)
    # is teacher forcing known when tracing: the loop then carries no logits and no draws.
    forced = not free_running and isinstance(probability, (int, float)) and probability == 0
    if free_running:
        fed = jnp.broadcast_to((t > 0)[:, None], (steps, batch))
    elif forced:
        fed = jnp.zeros((steps, batch), bool)
    else:
        fed = jax.vmap(lambda k: sampling.choose_sampled(k, probability, batch))(k_choose)
        fed = fed & (t > 0)[:, None]  # [T, B]
    any_fed = jnp.any(fed, axis=1)  # [T]
    # Step t needs its logits in the loop when step t + 1 samples from them; the last step does
    # as the one before it, so a fully sampled run needs no output matmul after the loop.
    need = None if forced else jnp.concatenate([any_fed[1:], any_fed[-1:]])  # [T]
    token_key = jnp.concatenate([k_token[1:], k_token[-1:]])  # the key of step t + 1's draw

    out_kernel, out_bias = params["out"]["kernel"], params["out"]["bias"]
    diff = {"layers": params["layers"], "attention": params.get("attention"),
            "state": list(initial_state), "base": jnp.where(fed[..., None], 0.0, gold_proj),
            "aux": aux_proj, "keys": memory.keys, "prepared": memory.prepared,
            "fixed": memory.fixed_proj, "probes": _attention_probes(opts, params, initial_state,
                                                                    memory, steps)}
    const = {"fed": fed, "need": need, "token_key": token_key, "dropout_key": k_dropout,
             "mask": memory.mask, "out_kernel": sg(out_kernel), "out_bias": sg(out_bias)}
    (outs, weights), (loop_logits, next_tokens, _) = _make_decode_scan(opts, sizes)(
        embed_params, diff, const, gold)
    use_loop = None if forced else jnp.all(need)
    logits = _output_logits(jnp.swapaxes(outs, 0, 1), out_kernel, out_bias,
                            None if forced else sg(loop_logits), use_loop)  # [B, T, V]
    tokens = jnp.concatenate([jnp.zeros_like(next_tokens[:1]), next_tokens[:-1]])  # [T, B]
    sample_ids = jnp.swapaxes(jnp.where(fed, tokens, -1), 0, 1)  # [B, T]
    return logits, sample_ids, fed, weights


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
      free_running: feed the model's own output at every step t >= 1, ignoring `probability`:
        in `embedding` mode a token drawn from the previous logits (greedy when
        `opts.sample_from == 'argmax'`), in `output` mode the next-inputs vector, as in
        training.

    Returns:
      DecoderOutput.
    """
    batch, steps = gold_inputs.shape
    k_aux = _kernel_parts(params["layers"][0], sizes)[3]
    aux_proj = None if aux_inputs is None else jnp.swapaxes(aux_inputs, 0, 1) @ k_aux
    memory = _prepare_memory(params, opts, sizes, encoder_outputs, source_mask, fixed_inputs)
    run = _unroll_embedding_mode if opts.sampling_mode == "embedding" else _unroll_output_mode
    logits, sample_ids, fed, weights = run(params, opts, sizes, memory, initial_state,
                                           gold_inputs, aux_proj, rng, probability, free_running)
    fed = jnp.swapaxes(fed, 0, 1)  # [B, T]
    if target_lengths is None:
        target_lengths = jnp.full((batch,), steps, jnp.int32)
    positions = jnp.arange(steps)[None, :]
    eligible = (positions >= 1) & (positions < target_lengths[:, None])  # [B, T]
    fraction = jnp.sum(fed & eligible) / jnp.maximum(jnp.sum(eligible), 1)
    attn = None if weights is None else jnp.swapaxes(weights, 0, 1)  # [B, T, S]
    return DecoderOutput(logits, sample_ids, fraction.astype(jnp.float32), attn)
