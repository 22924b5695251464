"""ModelConfig: everything that shapes a model, checked in Python before anything is traced."""

import dataclasses

from s2s_jax.models import attention as attention_lib
from s2s_jax.models import bridges, cells, sampling
from s2s_jax.models import precision as precision_lib

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
    # Of the matmuls (precision.PRECISIONS): 'bfloat16' multiplies bfloat16 operands and
    # accumulates in float32; parameters, states, softmaxes and the loss stay float32.
    precision: str = "float32"

    @classmethod
    def from_experiment(
        cls,
        *,
        bridge: str = ATTENTION_BRIDGE,
        attention_type: str = "bahdanau",
        attention_init: str = "dense",
        **fields,
    ) -> "ModelConfig":
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
            raise ValueError(
                "an experiment config spells attention as model.bridge='attention' "
                "with model.attention_type and model.attention_init; drop "
                "model.attention"
            )
        if bridge not in BRIDGE_SPELLINGS:
            raise ValueError(f"unknown --bridge {bridge!r}; choose one of {BRIDGE_SPELLINGS}")
        if bridge != ATTENTION_BRIDGE:
            return cls(bridge=bridge, attention=attention_lib.NONE, **fields)
        if attention_init not in bridges.BRIDGES:
            raise ValueError(
                f"unknown --attention_init {attention_init!r}; choose one of "
                f"{sorted(bridges.BRIDGES)}"
            )
        if attention_type not in attention_lib.ATTENTION:
            raise ValueError(
                f"unknown --attention_type {attention_type!r}; choose one of "
                f"{sorted(attention_lib.ATTENTION)}"
            )
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
        return bridges.StateSpec(
            self.cell, self.layers, self.directions * self.hidden, cell.state_names
        )

    def decoder_spec(self) -> bridges.StateSpec:
        cell = cells.get_cell(self.dec_cell)
        return bridges.StateSpec(self.dec_cell, self.dec_layers, self.dec_hidden, cell.state_names)


def check(cfg: ModelConfig) -> None:
    """Validates names and sizes in Python, with messages that name the flag to change (build
    calls it)."""
    if cfg.bridge == ATTENTION_BRIDGE:  # the config files' spelling, not a bridge
        raise ValueError(
            f"ModelConfig takes attention as its own field: bridge=<the initial "
            f"state's bridge>, attention=<one of {attention_lib.CHOICES}>; "
            f"ModelConfig.from_experiment reads bridge='attention'"
        )
    bridges.get_bridge(cfg.bridge)
    attention_lib.get_attention(cfg.attention)
    for name, choices in (
        ("sampling_mode", sampling.SAMPLING_MODES),
        ("sample_from", sampling.SAMPLE_FROM),
        ("next_inputs", sampling.NEXT_INPUTS),
        ("precision", precision_lib.PRECISIONS),
    ):
        if getattr(cfg, name) not in choices:
            raise ValueError(
                f"unknown --{name} {getattr(cfg, name)!r}; choose one of {sorted(choices)}"
            )
    if cfg.sampling_mode == "output":
        sampling.NEXT_INPUTS[cfg.next_inputs].check(cfg.tgt_vocab, cfg.emb)
    for name in ("emb", "hidden", "layers", "src_vocab", "tgt_vocab"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("decoder_hidden", "decoder_layers", "attention_dim", "aux_dim"):  # 0: derived
        if getattr(cfg, name) < 0:
            raise ValueError(
                f"--config.model.{name} must be at least 0 (0: its default size), "
                f"got {getattr(cfg, name)}"
            )
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"--dropout must lie in [0, 1), got {cfg.dropout}")
    if cfg.temperature <= 0.0:
        raise ValueError(f"--temperature must be positive, got {cfg.temperature}")
