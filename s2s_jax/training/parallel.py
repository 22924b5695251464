"""Data parallelism: a 1-D device mesh, shardings, and multi-host initialisation.

The batch is sharded on the mesh's `data` axis and parameters are replicated; `jax.jit` inserts
the gradient all-reduce. Losses are global sums over real tokens divided by global counts
(losses.py), so results do not depend on the number of devices or hosts.
"""

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize(coordinator_address: str = "", num_processes: int = 1, process_id: int = 0) -> None:
    """Starts `jax.distributed` when this is a multi-host run; must run before any JAX op.

    Explicit flags win; otherwise a cluster environment JAX knows how to read (SLURM, Open MPI,
    Cloud TPU, or JAX_COORDINATOR_ADDRESS) is auto-detected; otherwise it is a single process.
    """
    if num_processes > 1 or coordinator_address:
        if not coordinator_address or num_processes < 2 or not 0 <= process_id < num_processes:
            raise ValueError(
                f"a multi-host run needs --coordinator_address=HOST:PORT, --num_processes >= 2 "
                f"and 0 <= --process_id < --num_processes; got {coordinator_address!r}, "
                f"{num_processes}, {process_id}"
            )
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    elif os.environ.get("JAX_COORDINATOR_ADDRESS") or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
    else:
        return
    logging.info(
        "process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def make_mesh() -> jax.sharding.Mesh:
    """All devices of all hosts on one `data` axis."""
    return jax.make_mesh(
        (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, what: str = "--batch_size") -> None:
    if batch_size % jax.device_count():
        raise ValueError(
            f"{what}={batch_size} must be a multiple of the {jax.device_count()} "
            f"devices (the batch is split evenly over them); change {what}"
        )


def eval_batch_size(batch_size: int, what: str = "--config.train.eval_batch_size") -> int:
    """`batch_size` rounded up to a multiple of the device count, with an info line when that
    changes it, so one config evaluates on any number of devices. Evaluation pads its batches
    with empty examples that count for nothing, so the metrics do not change."""
    devices = jax.device_count()
    rounded = -(-batch_size // devices) * devices
    if rounded != batch_size:
        logging.info(
            "%s=%d rounded up to %d, a multiple of the %d devices",
            what,
            batch_size,
            rounded,
            devices,
        )
    return rounded


def global_batch(local_batch: dict, mesh) -> dict:
    """Assembles each host's rows into global arrays sharded on the `data` axis."""
    sharding = batch_sharded(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


def to_host(x) -> np.ndarray:
    """A (possibly multi-host) global array as one numpy array on every host."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # only multi-host runs need it

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
