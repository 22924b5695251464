"""The model: pure init/apply functions, registries of variants, no I/O.

  cells.py      recurrent cells (CELLS) as step functions, and stacks of them
  encoders.py   embedding + (bi)directional encoder scans
  bridges.py    BRIDGES: how the encoder's final state conditions the decoder
  attention.py  ATTENTION: score functions and the context over encoder outputs
  sampling.py   scheduled sampling: SCHEDULES, the Bernoulli draws, samplers, NEXT_INPUTS
  decoders.py   the decoder step (the model's definition) and its `lax.scan` unroll with
                scheduled sampling; greedy decoding and beam search run the same step
  fast_unroll.py  the embedding-mode training unroll of that step with a hand-written backward
                pass (same values and gradients, fewer per-step products)
  beam.py       beam search over any step function (decoders.token_step)
  config.py     ModelConfig: every field that shapes a model, and its checks
  model.py      ModelConfig -> Model(init, apply, decode_greedy, decode_beam)

Nothing here imports data, training or studies.
"""
