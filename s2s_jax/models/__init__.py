"""The model: pure init/apply functions, registries of variants, no I/O.

  cells.py      recurrent cells (CELLS) as step functions, and stacks of them
  encoders.py   embedding + (bi)directional encoder scans
  bridges.py    BRIDGES: how the encoder's final state conditions the decoder
  attention.py  ATTENTION: score functions and the context over encoder outputs
  sampling.py   scheduled sampling: SCHEDULES, the Bernoulli draws, samplers, NEXT_INPUTS
  decoders.py   the decoder step and its `lax.scan` unroll with scheduled sampling
  beam.py       beam search over the decoder step
  model.py      ModelConfig -> Model(init, apply, decode_greedy, decode_beam)

Nothing here imports data, training or studies.
"""
