"""Study: scheduled-sampling schedules and their caps, against teacher forcing.

Commands (from the repository root):

  python -m s2s_jax.sweep --config=experiments/schedules.py --seeds=3 --parallel=2 \
      --workdir=runs/schedules
  # one point by hand
  python run.py --config=experiments/schedules.py --sampling_schedule=linear \
      --config.sampling.k=1 --sampling_probability=0.5 --workdir=runs/sched_linear_05
  # the same grid with the attention bridge
  python -m s2s_jax.sweep --config=experiments/schedules.py --workdir=runs/schedules_attention \
      --set=model.bridge=attention
  # trained to convergence (4000 steps, 8 seeds): teacher forcing against the inverse-sigmoid
  # schedule at caps 0.1 and 0.25, feeding back a categorical sample or the argmax (40 runs)
  python -m s2s_jax.sweep --config=experiments/schedules.py:converged --parallel=2 \
      --workdir=runs/schedules_converged
  # seconds-long smoke sweep
  python -m s2s_jax.sweep --config=experiments/schedules.py:tiny --seeds=1 --workdir=/tmp/sched

Setting: the `dense` bridge (a fixed-size summary of the source, where exposure bias shows) on
the embedded `reverse` task, the bridges study's small model and 600 steps. Grid: teacher forcing
(constant p = 0) plus each schedule of Bengio et al. 2015 ramping up to a cap p in {0.1, 0.25,
0.5}, 13 points. Schedule parameters are chosen so every ramp reaches its cap within the first
half of training: linear eps_i = 1 - 0.001 i (k = 1, c = 1e-3), exponential eps_i = 0.998^i,
inverse sigmoid k = 60 (p = 0.25 at step ~180).

Expected outcome (a hypothesis, not yet measured): teacher forcing has the lowest teacher-forced
test loss but the largest exposure gap (teacher-forced minus free-running token accuracy);
scheduled sampling at p = 0.1-0.25 narrows the gap and raises free-running exact match; p = 0.5
slows learning enough in 600 steps to lose accuracy. The schedule shape matters less than the cap.
"""
import os

import ml_collections

from s2s_jax.config_files import load_config_file

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py")
# schedule -> its k (linear: eps start; exponential: decay base; inverse sigmoid: its k).
SCHEDULE_PARAMS = {"constant": 60.0, "linear": 1.0, "exponential": 0.998, "inverse_sigmoid": 60.0}
CAPS = [0.1, 0.25, 0.5]
CONVERGED_CAPS = [0.1, 0.25]


def _default_config(arg: str) -> ml_collections.ConfigDict:
    return load_config_file(_DEFAULT, arg)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "tiny", "converged"):
        raise ValueError(f"unknown variant {arg!r} of experiments/schedules.py; "
                         "use '', 'tiny' or 'converged'")
    c = _default_config("tiny" if arg == "tiny" else "")
    c.model.bridge = "dense"
    c.sampling.c = 1e-3  # linear: eps falls by 0.001 a step
    if arg != "tiny":
        c.model.update(emb=32, hidden=64)
        c.train.update(steps=600, eval_every=300, checkpoint_every=300, warmup_steps=50)

    c.sweep = ml_collections.ConfigDict()
    c.sweep.metrics = ["exact_match", "token_accuracy", "free_token_accuracy", "exposure_gap",
                       "bleu", "loss"]
    c.sweep.seeds = 3  # default of --seeds: seeds 0..seeds-1
    # results.md compares every point with teacher forcing, seed by seed (s2s_jax/results.py)
    c.sweep.baseline = [("sampling.probability", 0.0)]
    if arg == "converged":
        # After 600 steps every cap is behind teacher forcing; trained until teacher forcing
        # stops improving, does feedback catch up, and does it matter what is fed back?
        c.train.update(steps=4000, eval_every=1000, checkpoint_every=1000)
        fields = ("sampling.schedule", "sampling.k", "sampling.probability", "model.sample_from")
        points = [("constant", SCHEDULE_PARAMS["constant"], 0.0, "categorical")]
        points += [("inverse_sigmoid", SCHEDULE_PARAMS["inverse_sigmoid"], cap, sample_from)
                   for cap in CONVERGED_CAPS for sample_from in ("categorical", "argmax")]
        c.sweep.axes = [(fields, points)]
        c.sweep.seeds = 8  # the differences are about one seed-to-seed standard deviation
        return c
    # A schedule's k only makes sense with that schedule, so (schedule, k, cap) vary together:
    # one axis over a tuple of fields, each value a tuple (s2s_jax/sweep.py). Teacher forcing is
    # one point, not one per schedule.
    points = [("constant", SCHEDULE_PARAMS["constant"], 0.0)]
    points += [(name, k, cap) for name, k in SCHEDULE_PARAMS.items() for cap in CAPS]
    c.sweep.axes = [(("sampling.schedule", "sampling.k", "sampling.probability"), points)]
    return c
