"""Data pipeline throughput: prepare 100k synthetic examples, then iterate one epoch.

  python benchmarks/data_throughput.py [--num_train=100000] [--batch_size=64]

Prints one JSON line with examples/s for each phase:
  prepare  generate + write array_record through the TFDS builder (fresh data_dir)
  load     read back through the data source, build vocabularies, encode
  iterate  one epoch of train_iterator batches (grain, worker_count=0)
"""

import json
import os
import sys
import tempfile
import time

from absl import app, flags, logging

# Run as a script from anywhere: make the repository root importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from s2s_jax import data as s2s_data  # pylint: disable=g-import-not-at-top
from s2s_jax.data import synthetic  # pylint: disable=g-import-not-at-top

_NUM_TRAIN = flags.DEFINE_integer("num_train", 100_000, "training examples to prepare")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "global batch size")
_TASK = flags.DEFINE_enum("task", "reverse", sorted(synthetic.TASKS), "synthetic task")


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # keep stdout to the one JSON line
    cfg = s2s_data.default_config()
    cfg.dataset = _TASK.value
    cfg.synthetic.num_train = _NUM_TRAIN.value
    cfg.synthetic.num_valid = cfg.synthetic.num_test = 1000
    total = cfg.synthetic.num_train + 2 * 1000
    with tempfile.TemporaryDirectory() as tmp:
        cfg.data_dir = tmp
        params = synthetic.SyntheticParams(**cfg.synthetic)
        start = time.perf_counter()
        synthetic.prepare(cfg.dataset, params, tmp)
        prepare_s = time.perf_counter() - start

        start = time.perf_counter()
        data = s2s_data.load_data(cfg, None)
        load_s = time.perf_counter() - start

        it = s2s_data.train_iterator(data, _BATCH_SIZE.value, seed=0)
        steps = len(data.splits["train"]) // _BATCH_SIZE.value
        start = time.perf_counter()
        for _ in range(steps):
            next(it)
        iterate_s = time.perf_counter() - start

    print(
        json.dumps(
            {
                "task": cfg.dataset,
                "examples": total,
                "batch_size": _BATCH_SIZE.value,
                "prepare_s": round(prepare_s, 2),
                "prepare_examples_per_s": round(total / prepare_s),
                "load_s": round(load_s, 2),
                "load_examples_per_s": round(total / load_s),
                "iterate_s": round(iterate_s, 2),
                "iterate_examples_per_s": round(steps * _BATCH_SIZE.value / iterate_s),
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
