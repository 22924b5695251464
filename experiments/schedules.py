"""Study: scheduled-sampling schedules and their caps, against teacher forcing.

Commands (from the repository root):

  python -m s2s_jax.sweep --config=experiments/schedules.py --seeds=3 --parallel=2 \
      --workdir=runs/schedules
  # one point by hand
  python run.py --config=experiments/schedules.py --sampling_schedule=linear \
      --sampling_probability=0.5 --workdir=runs/sched_linear_05
  # the same grid with the attention bridge
  python -m s2s_jax.sweep --config=experiments/schedules.py --workdir=runs/schedules_attention \
      --set=model.bridge=attention
  # trained to convergence (4000 steps, 8 seeds): teacher forcing against the inverse-sigmoid
  # schedule at caps 0.1 and 0.25, feeding back a categorical sample or the argmax (40 runs)
  python -m s2s_jax.sweep --config=experiments/schedules.py:converged --parallel=2 \
      --workdir=runs/schedules_converged
  # the same with ScheduledOutputTrainingHelper's feedback (the previous step's softmax times
  # the embedding), without and with the gradient through it
  python -m s2s_jax.sweep --config=experiments/schedules.py:converged_output --parallel=2 \
      --workdir=runs/schedules_converged_output
  # seconds-long smoke sweep
  python -m s2s_jax.sweep --config=experiments/schedules.py:tiny --seeds=1 --workdir=/tmp/sched

Setting: the `dense` bridge (a fixed-size summary of the source, where exposure bias shows) on
the embedded `reverse` task, the bridges study's small model and 600 steps. Grid: teacher forcing
(constant p = 0) plus each schedule of Bengio et al. 2015 ramping up to a cap p in {0.1, 0.25,
0.5}, 13 points. Schedule parameters are chosen so every ramp reaches its cap within the first
half of training: linear eps_i = 1 - 0.001 i, exponential eps_i = 0.998^i, inverse sigmoid
k = 60 (p = 0.25 at step ~180); each schedule reads its own fields, so they are set once and
the grid varies the schedule and the cap.

Outcome (measured, 2026-11-29; experiments/results/schedules.md; the README has the tables).
The hypothesis before the run, that scheduled sampling at p = 0.1-0.25 narrows the exposure gap
(teacher-forced minus free-running token accuracy) and raises free-running exact match, was
wrong here. After 600 steps (3 seeds) teacher forcing is best on exact match, BLEU, loss and
both token accuracies: exact match 0.529 +- 0.006 against 0.395-0.402 at cap 0.1, 0.305-0.321
at 0.25 and 0.248-0.257 at 0.5; free-running token accuracy falls with the cap too, and the
exposure gap is larger at caps 0.1 and 0.25 (0.164-0.184 against 0.137). Every seed of every
capped point is below its teacher-forced twin. The schedule's shape does not matter: at each
cap the four schedules end within 0.02 exact match of each other.

Trained to convergence (`:converged`, 4000 steps, 8 seeds, 20 minutes), teacher forcing reaches
0.905 +- 0.016 with an exposure gap of 0.017, and what is fed back matters more than the cap.
Seed by seed against teacher forcing: a sampled token at cap 0.1 is -0.012 +- 0.016 (higher in
2 of 8 seeds) and at cap 0.25 -0.083 +- 0.031 (0 of 8); the argmax at cap 0.1 is +0.011 +- 0.013
(7 of 8; a paired t of 2.4, the only setting that beats teacher forcing, and narrowly) and at
cap 0.25 -0.012 +- 0.011 (1 of 8). No setting changes the exposure gap by more than its noise
except the sampled token at 0.25, which widens it (+0.018).

Feeding back the soft token instead (`:converged_output`, ScheduledOutputTrainingHelper with
softmax(logits) @ embedding, 8 seeds, 23 minutes; its teacher forcing runs the output-mode loop
and reaches 0.908 +- 0.018) behaves like the argmax: seed by seed, +0.010 +- 0.021 at cap 0.1
(higher in 5 of 8 seeds), -0.012 +- 0.017 at 0.25 (2 of 8). Letting the gradient flow through
the fed-back vector does not help: -0.010 +- 0.014 at 0.1 (2 of 8), -0.014 +- 0.012 at 0.25
(1 of 8). Only a sampled token at the higher cap costs clearly. A possible reason, not tested here:
in reversal the next target is fixed by the source position rather than by the previous target,
so a wrong fed-back token takes information away and teaches little; tasks whose outputs depend
on their own history, like language, may reward the feedback more.
"""
import os

import ml_collections

from s2s_jax.config_files import load_config_file

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py")
SCHEDULES = ["constant", "linear", "exponential", "inverse_sigmoid"]
CAPS = [0.1, 0.25, 0.5]
CONVERGED_CAPS = [0.1, 0.25]


def _default_config(arg: str) -> ml_collections.ConfigDict:
    return load_config_file(_DEFAULT, arg)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "tiny", "converged", "converged_output"):
        raise ValueError(f"unknown variant {arg!r} of experiments/schedules.py; "
                         "use '', 'tiny', 'converged' or 'converged_output'")
    c = _default_config("tiny" if arg == "tiny" else "")
    c.model.bridge = "dense"
    # Every ramp reaches its cap within the first half of the 600 steps.
    c.sampling.update(linear_start=1.0, linear_slope=1e-3, exponential_base=0.998,
                      inverse_sigmoid_k=60.0)
    if arg != "tiny":
        c.model.update(emb=32, hidden=64)
        c.train.update(steps=600, eval_every=300, checkpoint_every=300, warmup_steps=50)

    c.sweep = ml_collections.ConfigDict()
    c.sweep.metrics = ["exact_match", "token_accuracy", "free_token_accuracy", "exposure_gap",
                       "bleu", "loss"]
    c.sweep.seeds = 3  # default of --seeds: seeds 0..seeds-1
    # results.md compares every point with teacher forcing, seed by seed (s2s_jax/results.py)
    c.sweep.baseline = [("sampling.probability", 0.0)]
    if arg.startswith("converged"):
        # After 600 steps every cap is behind teacher forcing; trained until teacher forcing
        # stops improving, does feedback catch up, and does it matter what is fed back?
        c.train.update(steps=4000, eval_every=1000, checkpoint_every=1000)
        if arg == "converged":  # ScheduledEmbeddingTrainingHelper: a token, drawn or argmax
            feedback, values = "model.sample_from", ("categorical", "argmax")
        else:  # ScheduledOutputTrainingHelper: the soft token softmax(logits) @ embedding
            c.model.sampling_mode = "output"
            feedback, values = "model.output_gradient", (False, True)
        fields = ("sampling.schedule", "sampling.probability", feedback)
        points = [("constant", 0.0, values[0])]
        points += [("inverse_sigmoid", cap, value) for cap in CONVERGED_CAPS for value in values]
        c.sweep.axes = [(fields, points)]
        c.sweep.seeds = 8  # the differences are about one seed-to-seed standard deviation
        return c
    # Teacher forcing is one point, not one per schedule, so (schedule, cap) vary together: one
    # axis over a tuple of fields, each value a tuple (s2s_jax/grid.py).
    points = [("constant", 0.0)] + [(name, cap) for name in SCHEDULES for cap in CAPS]
    c.sweep.axes = [(("sampling.schedule", "sampling.probability"), points)]
    return c
