"""Composes the registry entries named by a `ModelConfig` into pure init/apply functions.

All registry names are resolved here, in Python, when `build` is called; the returned functions
close over the resolved entries and trace only arrays, so `jax.jit` sees a fixed program.
"""
import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.models import attention as attention_lib
from s2s_jax.models import beam, bridges, cells, decoders, encoders, fast_unroll, sampling

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2  # the data contract: pad 0, bos 1, eos 2, unk 3


# The config files' and the command line's spelling of attention: `bridge="attention"`, with the
# initial state's bridge in `attention_init` and the attention in `attention_type`.
ATTENTION_BRIDGE = "attention"
BRIDGE_SPELLINGS = sorted([*bridges.BRIDGES, ATTENTION_BRIDGE])  # what `--bridge` accepts


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the model; frozen, so it is hashable and safe to close over.

    `bridge` and `attention` are independent axes: any bridge's initial state, with or without
    attention. Experiment configs spell them differently; `from_experiment` translates.
    """

    src_vocab: int
    tgt_vocab: int
    emb: int = 64  # E, both embeddings
    hidden: int = 128  # encoder H per direction
    cell: str = "lstm"  # encoder cell (cells.CELLS)
    layers: int = 1  # encoder layers
    bidirectional: bool = False
    decoder_cell: str = ""  # '' = same as the encoder
    decoder_hidden: int = 0  # 0 = the width the bridge asks for (bridges.Bridge.decoder_width)
    decoder_layers: int = 0  # 0 = same as the encoder
    bridge: str = "dense"  # bridges.BRIDGES: the decoder's initial state (and per-step inputs)
    attention: str = "none"  # attention.CHOICES: "none", or attention over the encoder outputs
    attention_dim: int = 0  # Bahdanau hidden size; 0 = decoder hidden
    attention_normalize: bool = False  # weight-normalised Bahdanau
    dropout: float = 0.0  # between stacked layers, training only
    sampling_mode: str = "embedding"  # 'embedding' | 'output'
    sample_from: str = "categorical"  # 'argmax' | 'categorical'
    temperature: float = 1.0  # of the categorical sample / soft embedding
    next_inputs: str = "softmax_embedding"  # output mode: sampling.NEXT_INPUTS
    output_gradient: bool = False  # output mode: gradients through the fed-back vector
    aux_dim: int = 0  # width of batch['aux_inputs'] [B, T, A], then required (Python API only)
    # Activations and matmuls; parameters (and so gradients and optimizer state) stay float32.
    # 'bfloat16' suits accelerators and CPUs with bf16 matrix units (AMX); logits come out in it.
    compute_dtype: str = "float32"

    @classmethod
    def from_experiment(cls, *, bridge: str = ATTENTION_BRIDGE, attention_type: str = "bahdanau",
                        attention_init: str = "dense", **fields) -> "ModelConfig":
        """The ModelConfig of an experiment config's `model` section (config files, config.json
        and run.py's flags spell the model this way); the only place that reads that spelling.

        There, `bridge` is a bridges.BRIDGES name, or `ATTENTION_BRIDGE`: attention of type
        `attention_type` over the initial state of bridge `attention_init`. Under any other bridge
        there is no attention, and `attention_type` and `attention_init` are ignored (every
        config file carries them, so reading them there would add attention to every run).
        The defaults are those of experiments/default.py.

        Args:
          bridge, attention_type, attention_init: as in the config files.
          **fields: every other ModelConfig field (`src_vocab` and `tgt_vocab` among them).

        Raises:
          ValueError: an unknown bridge, or under `bridge="attention"` an unknown attention type
            or initial state, naming the flag and its choices.
        """
        if "attention" in fields:
            raise ValueError("an experiment config spells attention as model.bridge='attention' "
                             "with model.attention_type and model.attention_init; drop "
                             "model.attention")
        if bridge not in BRIDGE_SPELLINGS:
            raise ValueError(f"unknown --bridge {bridge!r}; choose one of {BRIDGE_SPELLINGS}")
        if bridge != ATTENTION_BRIDGE:
            return cls(bridge=bridge, attention=attention_lib.NONE, **fields)
        if attention_init not in bridges.BRIDGES:
            raise ValueError(f"unknown --attention_init {attention_init!r}; choose one of "
                             f"{sorted(bridges.BRIDGES)}")
        if attention_type not in attention_lib.ATTENTION:
            raise ValueError(f"unknown --attention_type {attention_type!r}; choose one of "
                             f"{sorted(attention_lib.ATTENTION)}")
        return cls(bridge=attention_init, attention=attention_type, **fields)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def dec_cell(self) -> str:
        return self.decoder_cell or self.cell

    @property
    def dec_hidden(self) -> int:
        if self.decoder_hidden:
            return self.decoder_hidden
        # The bridge's own need: the encoder output width for most (so `copy` and dot attention
        # fit), twice it for `concat`.
        return bridges.get_bridge(self.bridge).decoder_width(self.encoder_spec())

    @property
    def dec_layers(self) -> int:
        return self.decoder_layers or self.layers

    def encoder_spec(self) -> bridges.StateSpec:
        cell = cells.get_cell(self.cell)
        return bridges.StateSpec(self.cell, self.layers, self.directions * self.hidden,
                                 cell.state_names)

    def decoder_spec(self) -> bridges.StateSpec:
        cell = cells.get_cell(self.dec_cell)
        return bridges.StateSpec(self.dec_cell, self.dec_layers, self.dec_hidden, cell.state_names)


class Model(NamedTuple):
    config: ModelConfig
    init: Callable  # (rng) -> params
    apply: Callable  # (params, batch, rng, probability, train, *, teacher_forcing) -> ...
    decode_greedy: Callable  # (params, inputs, inputs_len, steps) -> free-running argmax output
    decode_beam: Callable  # (params, inputs, inputs_len, steps, beam, ...) -> (tokens, scores)


def _check(cfg: ModelConfig) -> None:
    """Validates names and sizes in Python, with messages that name the flag to change."""
    if cfg.bridge == ATTENTION_BRIDGE:  # the config files' spelling, not a bridge
        raise ValueError(f"ModelConfig takes attention as its own field: bridge=<the initial "
                         f"state's bridge>, attention=<one of {attention_lib.CHOICES}>; "
                         f"ModelConfig.from_experiment reads bridge='attention'")
    bridges.get_bridge(cfg.bridge)
    attention_lib.get_attention(cfg.attention)
    if cfg.sampling_mode not in sampling.SAMPLING_MODES:
        raise ValueError(f"unknown --sampling_mode {cfg.sampling_mode!r}; "
                         f"choose one of {sorted(sampling.SAMPLING_MODES)}")
    if cfg.sample_from not in sampling.SAMPLE_FROM:
        raise ValueError(f"unknown --sample_from {cfg.sample_from!r}; "
                         f"choose one of {sorted(sampling.SAMPLE_FROM)}")
    if cfg.next_inputs not in sampling.NEXT_INPUTS:
        raise ValueError(f"unknown --next_inputs {cfg.next_inputs!r}; "
                         f"choose one of {sorted(sampling.NEXT_INPUTS)}")
    if cfg.sampling_mode == "output":
        sampling.NEXT_INPUTS[cfg.next_inputs].check(cfg.tgt_vocab, cfg.emb)
    for name in ("emb", "hidden", "layers", "src_vocab", "tgt_vocab"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("decoder_hidden", "decoder_layers", "attention_dim", "aux_dim"):  # 0: derived
        if getattr(cfg, name) < 0:
            raise ValueError(f"--config.model.{name} must be at least 0 (0: its default size), "
                             f"got {getattr(cfg, name)}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"--dropout must lie in [0, 1), got {cfg.dropout}")
    if cfg.temperature <= 0.0:
        raise ValueError(f"--temperature must be positive, got {cfg.temperature}")
    if cfg.compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"unknown --compute_dtype {cfg.compute_dtype!r}; "
                         f"choose one of {sorted(COMPUTE_DTYPES)}")


COMPUTE_DTYPES = ("bfloat16", "float16", "float32")


def _check_aux(cfg: ModelConfig, aux_inputs, gold_shape) -> None:
    """Auxiliary inputs are there exactly when `aux_dim > 0`, one [A] vector per step: a model
    never runs silently without the inputs it was built to read."""
    if aux_inputs is None:
        if cfg.aux_dim:
            raise ValueError(f"the model has aux_dim={cfg.aux_dim} but was given no aux_inputs; "
                             f"pass aux_inputs [B, T, {cfg.aux_dim}] (batch['aux_inputs']), or "
                             f"build it with aux_dim=0")
        return
    want = (*gold_shape, cfg.aux_dim)
    if not cfg.aux_dim or tuple(aux_inputs.shape) != want:
        raise ValueError(f"aux_inputs have shape {tuple(aux_inputs.shape)} but the model reads "
                         f"{want} (aux_dim={cfg.aux_dim}); pass one [aux_dim] vector per "
                         f"example and step, or build it with aux_dim={aux_inputs.shape[-1]}")


def _cast(params, dtype: str):
    """Floating-point leaves of `params` in `dtype` (the identity for float32)."""
    if dtype == "float32":
        return params
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


def build(cfg: ModelConfig) -> Model:
    """Resolves the registries named in `cfg` and returns the model's pure functions.

    Raises:
      ValueError: an unknown name or an impossible combination (e.g. `copy` across different
        state structures), with a message that names both sides and the fix.
    """
    _check(cfg)
    enc_cell = cells.get_cell(cfg.cell)
    bridge = bridges.get_bridge(cfg.bridge)
    enc_spec, dec_spec = cfg.encoder_spec(), cfg.decoder_spec()
    attn = attention_lib.get_attention(cfg.attention)  # None: no attention
    opts = decoders.DecoderOptions(
        cell=cells.get_cell(cfg.dec_cell), attention=attn, sampling_mode=cfg.sampling_mode,
        sample_from=cfg.sample_from, temperature=cfg.temperature, next_inputs=cfg.next_inputs,
        output_gradient=cfg.output_gradient, dropout_rate=cfg.dropout)
    key_dim = cfg.directions * cfg.hidden  # encoder output width
    sizes = decoders.InputSizes(emb=cfg.emb, context=key_dim if attn else 0,
                                fixed=bridge.step_input_dim(enc_spec),
                                aux=cfg.aux_dim)
    # Fail at build time, not deep inside a trace, for impossible bridge/attention combinations.
    bridge.init(jax.random.PRNGKey(0), enc_spec, dec_spec)
    if attn is not None:
        attn.init(jax.random.PRNGKey(0), cfg.dec_hidden, key_dim, 1, False)

    def init(rng):
        k_enc, k_bridge, k_dec = jax.random.split(rng, 3)
        return {
            "encoder": encoders.init(k_enc, enc_cell, cfg.src_vocab, cfg.emb, cfg.hidden,
                                     cfg.layers, cfg.bidirectional),
            "bridge": bridge.init(k_bridge, enc_spec, dec_spec),
            "decoder": decoders.init(k_dec, opts, cfg.tgt_vocab, cfg.dec_hidden, cfg.dec_layers,
                                     sizes, key_dim, cfg.attention_dim or cfg.dec_hidden,
                                     cfg.attention_normalize),
        }

    def _run(params, inputs, inputs_len, gold_inputs, rng, probability, *, train: bool,
             dec_opts: decoders.DecoderOptions, feed: str, target_lengths=None, aux_inputs=None):
        _check_aux(cfg, aux_inputs, gold_inputs.shape)
        params = _cast(params, cfg.compute_dtype)
        if aux_inputs is not None and cfg.compute_dtype != "float32":
            aux_inputs = aux_inputs.astype(cfg.compute_dtype)
        k_enc, k_dec = jax.random.split(rng)
        encoded = encoders.encode(params["encoder"], enc_cell, inputs, inputs_len,
                                  dropout_rate=cfg.dropout if train else 0.0,
                                  rng=k_enc if train else None)
        cond = bridge.apply(params["bridge"], encoded.state, dec_spec)
        if not train:
            dec_opts = dec_opts._replace(dropout_rate=0.0)
        # Embedding-mode training runs the same function with its backward pass written out
        # (fast_unroll); free running needs no gradient, and output mode's fed-back vector
        # carries one, so both run the plain scan of the step.
        fast = dec_opts.sampling_mode == "embedding" and feed != "free_running"
        return decoders.unroll(
            params["decoder"], dec_opts, sizes, cond.state, gold_inputs, k_dec, probability,
            feed=feed, scan_fn=fast_unroll.scan if fast else decoders.scan,
            encoder_outputs=encoded.outputs, source_mask=encoded.mask,
            fixed_inputs=cond.step_inputs, aux_inputs=aux_inputs, target_lengths=target_lengths)

    def apply(params, batch, rng, probability, train: bool = True, *,
              teacher_forcing: bool = False):
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
        return _run(params, batch["inputs"], batch["inputs_len"], gold_inputs, rng, probability,
                    train=train, dec_opts=opts,
                    feed="teacher_forcing" if teacher_forcing else "scheduled",
                    target_lengths=batch["targets_len"], aux_inputs=batch.get("aux_inputs"))

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
        return _run(params, inputs, inputs_len, gold_inputs, jax.random.PRNGKey(0), 1.0,
                    train=False, dec_opts=greedy_opts, feed="free_running",
                    aux_inputs=aux_inputs)

    def decode_beam(params, inputs, inputs_len, steps: int, beam_size: int,
                    penalty: str = "gnmt", alpha: float = 0.6, min_len: int = 0):
        """Beam search (beam.search): tokens [B, K, steps] and normalised scores [B, K]."""
        if cfg.aux_dim:
            raise ValueError(f"beam search does not read auxiliary decoder inputs (the model has "
                             f"aux_dim={cfg.aux_dim}); decode greedily instead "
                             f"(decode_greedy(..., aux_inputs=...), beam_size=1)")
        params = _cast(params, cfg.compute_dtype)
        encoded = encoders.encode(params["encoder"], enc_cell, inputs, inputs_len)
        cond = bridge.apply(params["bridge"], encoded.state, dec_spec)
        repeat = lambda x: None if x is None else jnp.repeat(x, beam_size, axis=0)  # noqa: E731
        dec_params, beam_opts = params["decoder"], opts._replace(dropout_rate=0.0)
        memory = decoders.prepare_memory(dec_params, beam_opts, sizes, repeat(encoded.outputs),
                                         repeat(encoded.mask), repeat(cond.step_inputs))
        step = decoders.token_step(dec_params, beam_opts, sizes, memory)
        state = jax.tree_util.tree_map(repeat, cond.state)  # [B*K, H] leaves
        return beam.search(step, state, inputs.shape[0], beam_size, steps, bos=BOS_ID,
                           eos=EOS_ID, pad=PAD_ID, penalty=penalty, alpha=alpha, min_len=min_len)

    return Model(cfg, init, apply, decode_greedy, decode_beam)
