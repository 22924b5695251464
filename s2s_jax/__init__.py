"""s2s_jax: recurrent sequence-to-sequence models with scheduled sampling in JAX.

The package is layered; imports point down the list:
  models/     the math: cells, encoders, bridges, attention, sampling, the decoder, beam search,
              and `model.build`, which composes them from a `ModelConfig`
  data/       datasets (TFDS builders), tokenizers and vocabularies, grain batch pipelines
  training/   the train step and loop, losses, evaluation, checkpoints, run log, parallelism,
              inference on a trained workdir
  studies/    sweeps over a grid, K seeds trained at once, results tables and plots
  cli.py, config_files.py   the command line and experiment config files
"""
