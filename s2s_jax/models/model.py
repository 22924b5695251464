"""Composes the registry entries named by a `ModelConfig` into pure init/apply functions.

All registry names are resolved here, in Python, when `build` is called; the returned functions
close over the resolved entries and trace only arrays, so `jax.jit` sees a fixed program.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.models import attention as attention_lib
from s2s_jax.models import beam, bridges, cells, config, decoders, encoders, fast_unroll, precision
from s2s_jax.models.config import ATTENTION_BRIDGE, BRIDGE_SPELLINGS, ModelConfig

# ModelConfig and its names are read through this module too (model.ModelConfig).
__all__ = [
    "ATTENTION_BRIDGE",
    "BRIDGE_SPELLINGS",
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "Model",
    "ModelConfig",
    "build",
]

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2  # the data contract: pad 0, bos 1, eos 2, unk 3


class Model(NamedTuple):
    config: ModelConfig
    init: Callable  # (rng) -> params
    apply: Callable  # (params, batch, rng, probability, train, *, teacher_forcing) -> ...
    decode_greedy: Callable  # (params, inputs, inputs_len, steps) -> free-running argmax output
    decode_beam: Callable  # (params, inputs, inputs_len, steps, beam, ...) -> (tokens, scores)


def _check_aux(cfg: ModelConfig, aux_inputs, gold_shape) -> None:
    """Auxiliary inputs are there exactly when `aux_dim > 0`, one [A] vector per step: a model
    never runs silently without the inputs it was built to read."""
    if aux_inputs is None:
        if cfg.aux_dim:
            raise ValueError(
                f"the model has aux_dim={cfg.aux_dim} but was given no aux_inputs; "
                f"pass aux_inputs [B, T, {cfg.aux_dim}] (batch['aux_inputs']), or "
                f"build it with aux_dim=0"
            )
        return
    want = (*gold_shape, cfg.aux_dim)
    if not cfg.aux_dim or tuple(aux_inputs.shape) != want:
        raise ValueError(
            f"aux_inputs have shape {tuple(aux_inputs.shape)} but the model reads "
            f"{want} (aux_dim={cfg.aux_dim}); pass one [aux_dim] vector per "
            f"example and step, or build it with aux_dim={aux_inputs.shape[-1]}"
        )


def build(cfg: ModelConfig) -> Model:
    """Resolves the registries named in `cfg` and returns the model's pure functions.

    Raises:
      ValueError: an unknown name or an impossible combination (e.g. `copy` across different
        state structures), with a message that names both sides and the fix.
    """
    config.check(cfg)
    precision.check_backend(cfg.precision)
    enc_cell = cells.get_cell(cfg.cell)
    bridge = bridges.get_bridge(cfg.bridge)
    enc_spec, dec_spec = cfg.encoder_spec(), cfg.decoder_spec()
    attn = attention_lib.get_attention(cfg.attention)  # None: no attention
    opts = decoders.DecoderOptions(
        cell=cells.get_cell(cfg.dec_cell),
        attention=attn,
        sampling_mode=cfg.sampling_mode,
        sample_from=cfg.sample_from,
        temperature=cfg.temperature,
        next_inputs=cfg.next_inputs,
        output_gradient=cfg.output_gradient,
        dropout_rate=cfg.dropout,
    )
    key_dim = cfg.directions * cfg.hidden  # encoder output width
    sizes = decoders.InputSizes(
        emb=cfg.emb,
        context=key_dim if attn else 0,
        fixed=bridge.step_input_dim(enc_spec),
        aux=cfg.aux_dim,
    )
    # Fail at build time, not deep inside a trace, for impossible bridge/attention combinations.
    bridge.init(jax.random.PRNGKey(0), enc_spec, dec_spec)
    if attn is not None:
        attn.init(jax.random.PRNGKey(0), cfg.dec_hidden, key_dim, 1, False)

    def init(rng):
        k_enc, k_bridge, k_dec = jax.random.split(rng, 3)
        return {
            "encoder": encoders.init(
                k_enc, enc_cell, cfg.src_vocab, cfg.emb, cfg.hidden, cfg.layers, cfg.bidirectional
            ),
            "bridge": bridge.init(k_bridge, enc_spec, dec_spec),
            "decoder": decoders.init(
                k_dec,
                opts,
                cfg.tgt_vocab,
                cfg.dec_hidden,
                cfg.dec_layers,
                sizes,
                key_dim,
                cfg.attention_dim or cfg.dec_hidden,
                cfg.attention_normalize,
            ),
        }

    def _run(
        params,
        inputs,
        inputs_len,
        gold_inputs,
        rng,
        probability,
        *,
        train: bool,
        dec_opts: decoders.DecoderOptions,
        feed: str,
        target_lengths=None,
        aux_inputs=None,
    ):
        _check_aux(cfg, aux_inputs, gold_inputs.shape)
        k_enc, k_dec = jax.random.split(rng)
        encoded = encoders.encode(
            params["encoder"],
            enc_cell,
            inputs,
            inputs_len,
            dropout_rate=cfg.dropout if train else 0.0,
            rng=k_enc if train else None,
        )
        cond = bridge.apply(params["bridge"], encoded.state, dec_spec)
        if not train:
            dec_opts = dec_opts._replace(dropout_rate=0.0)
        # Embedding-mode training runs the same function with its backward pass written out
        # (fast_unroll); free running needs no gradient, and output mode's fed-back vector
        # carries one, so both run the plain scan of the step.
        fast = dec_opts.sampling_mode == "embedding" and feed != "free_running"
        return decoders.unroll(
            params["decoder"],
            dec_opts,
            sizes,
            cond.state,
            gold_inputs,
            k_dec,
            probability,
            feed=feed,
            scan_fn=fast_unroll.scan if fast else decoders.scan,
            encoder_outputs=encoded.outputs,
            source_mask=encoded.mask,
            fixed_inputs=cond.step_inputs,
            aux_inputs=aux_inputs,
            target_lengths=target_lengths,
        )

    def apply(
        params, batch, rng, probability, train: bool = True, *, teacher_forcing: bool = False
    ):
        """Scheduled-sampling forward pass over the targets.

        batch: `inputs` [B, S], `inputs_len` [B], `targets` [B, T] (ending in EOS),
        `targets_len` [B], optional `aux_inputs` [B, T, A]. `probability` may be traced (a
        traced 0 is teacher forcing too); `teacher_forcing=True` ignores it and states teacher
        forcing when tracing, so the program holds no draws and no logits inside the loop.
        Returns a DecoderOutput.
        """
        targets = batch["targets"]  # [B, T]
        bos = jnp.full((targets.shape[0], 1), BOS_ID, targets.dtype)
        gold_inputs = jnp.concatenate([bos, targets[:, :-1]], axis=1)  # [B, T]
        return _run(
            params,
            batch["inputs"],
            batch["inputs_len"],
            gold_inputs,
            rng,
            probability,
            train=train,
            dec_opts=opts,
            feed="teacher_forcing" if teacher_forcing else "scheduled",
            target_lengths=batch["targets_len"],
            aux_inputs=batch.get("aux_inputs"),
        )

    # Free running feeds what training's feedback fed: in embedding mode the argmax token's
    # embedding (greedy), in output mode the next-inputs vector of the previous logits.
    greedy_opts = opts._replace(sample_from="argmax")

    def decode_greedy(params, inputs, inputs_len, steps: int, aux_inputs=None):
        """Free-running decoding for `steps` steps from BOS: DecoderOutput [B, steps].

        Every step t >= 1 reads the model's own previous output the way training fed it back
        (the argmax token in `embedding` mode, the next-inputs vector in `output` mode); the
        decoded tokens are the argmax of each step's logits. `aux_inputs` [B, steps, A] are
        required when `aux_dim > 0`.
        """
        gold_inputs = jnp.full((inputs.shape[0], steps), BOS_ID, jnp.int32)  # only BOS is read
        return _run(
            params,
            inputs,
            inputs_len,
            gold_inputs,
            jax.random.PRNGKey(0),
            1.0,
            train=False,
            dec_opts=greedy_opts,
            feed="free_running",
            aux_inputs=aux_inputs,
        )

    def decode_beam(
        params,
        inputs,
        inputs_len,
        steps: int,
        beam_size: int,
        penalty: str = "gnmt",
        alpha: float = 0.6,
        min_len: int = 0,
    ):
        """Beam search (beam.search): tokens [B, K, steps] and normalised scores [B, K]."""
        if cfg.aux_dim:
            raise ValueError(
                f"beam search does not read auxiliary decoder inputs (the model has "
                f"aux_dim={cfg.aux_dim}); decode greedily instead "
                f"(decode_greedy(..., aux_inputs=...), beam_size=1)"
            )
        encoded = encoders.encode(params["encoder"], enc_cell, inputs, inputs_len)
        cond = bridge.apply(params["bridge"], encoded.state, dec_spec)
        repeat = lambda x: None if x is None else jnp.repeat(x, beam_size, axis=0)  # noqa: E731
        dec_params, beam_opts = params["decoder"], opts._replace(dropout_rate=0.0)
        memory = decoders.prepare_memory(
            dec_params,
            beam_opts,
            sizes,
            repeat(encoded.outputs),
            repeat(encoded.mask),
            repeat(cond.step_inputs),
        )
        step = decoders.token_step(dec_params, beam_opts, sizes, memory)
        state = jax.tree_util.tree_map(repeat, cond.state)  # [B*K, H] leaves
        return beam.search(
            step,
            state,
            inputs.shape[0],
            beam_size,
            steps,
            bos=BOS_ID,
            eos=EOS_ID,
            pad=PAD_ID,
            penalty=penalty,
            alpha=alpha,
            min_len=min_len,
        )

    # Every matmul they trace runs in cfg.precision; the parameters stay float32.
    in_precision = lambda fn: precision.within(cfg.precision, fn)  # noqa: E731
    return Model(cfg, init, *map(in_precision, (apply, decode_greedy, decode_beam)))
