"""Study: recurrent cell (LSTM / GRU) and depth (1 / 2 layers) of encoder and decoder.

Commands (from the repository root):

  python -m s2s_jax.sweep --config=experiments/cells.py --seeds=3 --parallel=2 \
      --workdir=runs/cells
  # one point by hand
  python run.py --config=experiments/cells.py --cell=gru --layers=2 --workdir=runs/gru2
  # add unidirectional encoders (8 points)
  python -m s2s_jax.sweep --config=experiments/cells.py --workdir=runs/cells_bidi \
      --axis=model.bidirectional=true,false
  # seconds-long smoke sweep
  python -m s2s_jax.sweep --config=experiments/cells.py:tiny --seeds=1 --workdir=/tmp/cells

Setting: the `dense` bridge (the decoder depends on the encoder's final state, so the cell's
state structure matters: LSTM carries (c, h), GRU h) on the embedded `reverse` task, the bridges
study's small model (64 units per direction, decoder 128, the same depth as the encoder) and
600 steps; 2 layers have dropout 0.1 between them.

Expected outcome (a hypothesis, not yet measured): LSTM and GRU end within a few points of each
other at one layer; GRU learns faster early (fewer parameters, one state tensor) and LSTM's extra
cell state helps remember the whole source through the dense bridge; a second layer costs ~2x
time per step and helps little on this task in 600 steps.
"""
import os

import ml_collections

from s2s_jax.config_files import load_config_file

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py")


def _default_config(arg: str) -> ml_collections.ConfigDict:
    return load_config_file(_DEFAULT, arg)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "tiny"):
        raise ValueError(f"unknown variant {arg!r} of experiments/cells.py; use '' or 'tiny'")
    c = _default_config(arg)
    c.model.bridge = "dense"
    c.model.dropout = 0.1  # only acts between stacked layers
    if not arg:
        c.model.update(emb=32, hidden=64)
        c.sampling.k = 60.0  # inverse sigmoid reaches the 0.25 cap by step ~280 of 600
        c.train.update(steps=600, eval_every=300, checkpoint_every=300, warmup_steps=50)

    c.sweep = ml_collections.ConfigDict()
    # (dotted config field, values) pairs; the grid is their product (s2s_jax/sweep.py).
    c.sweep.axes = [("model.cell", ["lstm", "gru"]), ("model.layers", [1, 2])]
    c.sweep.metrics = ["exact_match", "token_accuracy", "bleu", "loss", "exposure_gap"]
    c.sweep.seeds = 3  # default of --seeds: seeds 0..seeds-1
    return c
