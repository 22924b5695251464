"""Training a model and using a trained workdir.

train.py         TrainState, the pure train step, set-up, the one restore path, the ordinary run
loop.py          the one training loop (rows, evaluations, checkpoints, stop) for 1 or K seeds
losses.py        masked cross-entropy, token accuracy, exact match
evaluation.py    teacher-forced loss, free-running exact match and BLEU
checkpoint.py    orbax checkpoints: keep N and the best, resume, skip damaged ones
inference.py     restore a workdir's checkpoint, evaluate, predict
run_log.py       config.json, metrics.jsonl, TensorBoard, progress lines
plots.py         learning curves and attention maps as PNG
parallel.py      the device mesh, shardings, multi-host start
settings.py      the config read and checked: ModelConfig, schedule, optimizer, resume rules
prng.py          every random stream of a run, by named folds of one root key
stopping.py      SIGTERM / Ctrl-C as a stop request between steps
workdir_lock.py  one run per workdir
host_memory.py   glibc malloc tuning for large compiled steps
"""
