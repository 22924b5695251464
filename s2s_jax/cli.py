"""Command-line entry points: absl's app.run, with bad input reported as one line.

Every error a user can fix (a bad flag value, unreadable data, a diverged run, a missing file)
is raised as one of `user_errors()` with a message that names the problem and the fix. The entry
point prints its first line as `error: ...` on stderr and exits with status 2, never a
traceback; anything else is a bug and keeps its traceback.
"""
import os
import sys


def user_errors() -> tuple:
    """The exception types whose message is the whole story (imported late: absl parses flags
    before the heavy modules load)."""
    from s2s_jax import data, train  # pylint: disable=import-outside-toplevel
    return (ValueError, data.DataError, train.TrainingError, FileNotFoundError)


def run(main):
    """absl.app.run(main), printing a user error as one line and exiting with status 2."""
    from absl import app, logging  # pylint: disable=import-outside-toplevel

    def wrapped(argv):
        try:
            return main(argv)  # app.run exits with main's return value
        except user_errors() as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"error: {message}", file=sys.stderr, flush=True)
            logging.flush()
            os._exit(2)  # skip interpreter teardown: pending async work must not print tracebacks

    app.run(wrapped)
