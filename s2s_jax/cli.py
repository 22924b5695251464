"""Command-line entry points: absl's app.run, with bad input reported as one line.

Every error a user can fix (a bad flag value, unreadable data, a diverged run, a missing file)
is raised as one of `user_errors()` with a message that names the problem and the fix. The entry
point prints its first line as `error: ...` on stderr and exits with status 2, never a
traceback; anything else is a bug and keeps its traceback.

Before main runs (flags parsed, JAX's backend not yet created), glibc is told to keep freed
memory for reuse (`--malloc_tuning`, see host_memory): otherwise every training step
page-faults its buffers in again.
"""
import os
import sys

from s2s_jax import host_memory


def user_errors() -> tuple:
    """The exception types whose message is the whole story (imported late: absl parses flags
    before the heavy modules load)."""
    from s2s_jax import data, train  # pylint: disable=import-outside-toplevel
    return (ValueError, data.DataError, train.TrainingError, FileNotFoundError)


def run(main, malloc_default: str = "keep"):
    """absl.app.run(main), printing a user error as one line and exiting with status 2.

    malloc_default: the --malloc_tuning default of this entry point (host_memory.MODES).
    """
    from absl import app, flags, logging  # pylint: disable=import-outside-toplevel

    flags.DEFINE_enum("malloc_tuning", malloc_default, list(host_memory.MODES),
                      "glibc malloc: 'keep' freed memory for reuse instead of page-faulting every "
                      "step's buffers in again; 'keep_one_arena' also for blocks over 64 MB "
                      "(big batch x length x vocabulary), at the cost of lock contention; 'off'. "
                      "Resident memory stays at its peak (s2s_jax/host_memory.py)")

    def wrapped(argv):
        host_memory.keep_freed_memory(flags.FLAGS.malloc_tuning)
        try:
            return main(argv)  # app.run exits with main's return value
        except user_errors() as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"error: {message}", file=sys.stderr, flush=True)
            logging.flush()
            os._exit(2)  # skip interpreter teardown: pending async work must not print tracebacks

    app.run(wrapped)
