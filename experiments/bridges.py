"""Study: how the encoder conditions the decoder (every bridge), scheduled sampling on.

The grid: every bridge of s2s_jax/models/bridges.py (BRIDGES), without attention, and
`attention` (Bahdanau attention over a dense initial state, the default experiment's model); a
bridge added to the registry joins it.

Commands (from the repository root):

  # the study: every bridge x 3 seeds, two runs at a time; results.md/.csv and PNGs in the workdir
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --seeds=3 --parallel=2 \
      --workdir=runs/bridges
  # the same, each bridge's 3 seeds in one vmapped program (as fast per step as separate runs
  # at this model size on 2 cores, see benchmarks/multiseed.py; it pays off for tiny models)
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --seeds=3 --vmap \
      --workdir=runs/bridges
  # the same grid fed back the argmax instead of a sample, and with teacher forcing
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --parallel=2 \
      --set=model.sample_from=argmax --workdir=runs/bridges_argmax
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --parallel=2 \
      --set=sampling.probability=0 --workdir=runs/bridges_teacher_forcing
  # teacher forcing trained to convergence
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --parallel=2 \
      --set=sampling.probability=0 --set=train.steps=4000 --workdir=runs/bridges_tf_4000
  # one point of the grid by hand
  python run.py --config=experiments/bridges.py --bridge=dense --workdir=runs/bridges_dense
  # seconds-long smoke sweep
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py:tiny --seeds=1 \
      --workdir=/tmp/bridges

Setting: the embedded `reverse` task (lengths 3-12, 20 symbols) with a smaller model than the
default experiment (bidirectional LSTM, 64 units per direction, decoder 128 units; `concat` gets a
256-unit decoder, its bridges.Bridge.decoder_width) and 1500 steps (~5 epochs), so the 18 runs
of its six bridges take about 5 minutes on a 2-core CPU with --parallel=2. The inverse-sigmoid
schedule (k = 60) reaches its cap p = 0.25 at step 180, so most of training feeds back the
model's own tokens a quarter of the time.

Outcome (measured, 3 seeds a point, 2026-12-04 with the current seed keys and the per-tensor
`concat`; experiments/results/bridges.md; the README has the table). `attention` solves the
task (test exact match 1.000 in every seed and every setting): the decoder can look at the
source position it emits. The bridges that squeeze the source into a fixed state learn part of
it, in the order concat (0.795) > copy (0.702) > concat_inputs (0.621) > dense (0.544), with
exposure gaps (teacher-forced minus free-running token accuracy) of 0.05-0.12 that attention
does not have; `zero` gives the decoder no information about the source and stays at chance
(exact match 0, token accuracy 0.14). The order holds when the argmax is fed back instead of a
sample and with teacher forcing (where concat_inputs and dense are 0.002 apart, 0.768 and
0.766), and so does one more result: at this length of training, scheduled sampling costs
every fixed-state bridge exact match. Against teacher forcing, sampled feedback loses 0.09-0.22
(dense the most) and argmax feedback 0.03-0.12, and neither narrows the exposure gap except
copy's with the argmax (0.043 against 0.046). experiments/schedules.py follows this up. With
the earlier seed keys and `concat` (commit 1ca7431) the same held, and trained to convergence
with teacher forcing (4000 steps) concat's lead over copy was one of speed only (both 0.963);
that run is not repeated yet.
"""

import os

import ml_collections

from s2s_jax.config_files import load_config_file
from s2s_jax.models import bridges, model

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py")
# The registry's bridges, then the config spelling of attention over a dense initial state.
BRIDGES = [*bridges.BRIDGES, model.ATTENTION_BRIDGE]


def _default_config(arg: str) -> ml_collections.ConfigDict:
    return load_config_file(_DEFAULT, arg)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "tiny"):
        raise ValueError(f"unknown variant {arg!r} of experiments/bridges.py; use '' or 'tiny'")
    c = _default_config(arg)  # the default experiment's fields; `tiny` has its tiny sizes
    if not arg:
        c.model.update(emb=32, hidden=64)  # decoder_hidden=0: 128 (256 for concat)
        c.sampling.inverse_sigmoid_k = 60.0  # reaches the 0.25 cap at step 180 of 1500
        c.train.update(steps=1500, eval_every=500, checkpoint_every=500, warmup_steps=50)

    c.sweep = ml_collections.ConfigDict()
    # (dotted config field, values) pairs; the grid is their product (s2s_jax/studies/grid.py).
    c.sweep.axes = [("model.bridge", BRIDGES)]
    c.sweep.metrics = ["exact_match", "token_accuracy", "bleu", "loss", "exposure_gap"]
    c.sweep.seeds = 3  # default of --seeds: seeds 0..seeds-1
    return c
