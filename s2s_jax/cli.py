"""Command-line entry points: absl's app.run, with bad input reported as one line.

Every error a user can fix (a bad flag value, unreadable data, a diverged run, a missing file)
is raised as one of `user_errors()` with a message that names the problem and the fix. The entry
point prints its first line as `error: ...` on stderr and exits with status 2, never a
traceback; anything else is a bug and keeps its traceback.

Flags that do not parse get the same treatment (`flag_errors`, `parse_flags`), where absl would
print two lines and exit 1, and ml_collections' --config would print a traceback: an unknown
flag, a value of the wrong type, a config file that does not load, an unknown variant, an
override of a field the config does not have. ml_collections reads the --config.FIELD overrides
from sys.argv when --config is *defined*, so that definition needs `flag_errors` too.

Before main runs (flags parsed, JAX's backend not yet created), glibc is told to keep freed
memory for reuse (`--malloc_tuning`, see host_memory): otherwise every training step
page-faults its buffers in again.
"""

import ast
import contextlib
import os
import re
import sys

from s2s_jax.training import host_memory


def user_errors() -> tuple:
    """The exception types whose message is the whole story (imported late: absl parses flags
    before the heavy modules load)."""
    from s2s_jax import data  # pylint: disable=import-outside-toplevel
    from s2s_jax.training import run_log, train

    return (ValueError, data.DataError, train.TrainingError, FileNotFoundError, run_log.WriteError)


def _unquote(text: str) -> str:
    """ml_collections wraps a KeyError's message in an AttributeError: repr inside repr."""
    while len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        try:
            text = ast.literal_eval(text)
        except (SyntaxError, ValueError):
            break
    return text


def flag_message(err: Exception) -> str:
    """One line for an exception raised while flags were defined or parsed."""
    from absl import flags  # pylint: disable=import-outside-toplevel

    lines = [line.strip() for line in _unquote(str(err)).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if isinstance(err, (KeyError, AttributeError)):  # a --config.FIELD=VALUE override
        field = lines[0].strip("'\"")
        named = [
            a.split("=")[0]
            for a in sys.argv[1:]
            if a.startswith("--config.") and field in a.split("=")[0].split(".")
        ]
        flag = named[0] if named else "a --config.FIELD=VALUE flag"
        hint = f"; {lines[-1][0].lower()}{lines[-1][1:]}" if len(lines) > 1 else ""
        return f"{flag}: the --config file has no field '{field}'{hint}"
    if "Failed loading config file" in lines[0]:  # a missing file: ml_collections' OSError
        return f"--config: {lines[-1]}; give an existing FILE or FILE:VARIANT"
    if any(line.startswith("Traceback") for line in lines):  # an error inside the config file
        head = lines[0].replace("Error whilst parsing config file:", "").rstrip(": ")
        return f"{head}: {re.sub(r'^[A-Za-z_.]*(Error|Exception): ', '', lines[-1])}"
    required = re.search(r"Flag (--\w+) must have a value other than None", lines[0])
    if required:
        return f"{required.group(1)} is required (--helpshort lists the flags)"
    message = " ".join(lines)
    if isinstance(err, flags.Error):
        return f"{message} (--helpshort lists the flags)"
    # Anything else came from running the --config file's own code (an import, a syntax error).
    return f"the --config file raised {type(err).__name__}: {message}"


@contextlib.contextmanager
def flag_errors():
    """Any error while flags are defined or parsed: one `error: ...` line, exit status 2."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - here every error comes from the flags or the config
        print(f"error: {flag_message(err)}", file=sys.stderr, flush=True)
        sys.exit(2)


def parse_flags(argv: list) -> list:
    """app.run's flags_parser: absl's parse, with `flag_errors`; returns the other arguments."""
    from absl import flags  # pylint: disable=import-outside-toplevel

    with flag_errors():
        return flags.FLAGS(argv)


def run(main, malloc_default: str | None = "keep"):
    """absl.app.run(main), printing a user error as one line and exiting with status 2.

    malloc_default: the --malloc_tuning default of this entry point (host_memory.MODES); None
      for an entry point that trains nothing (no flag, glibc left as it is).
    """
    from absl import app, flags, logging  # pylint: disable=import-outside-toplevel

    if malloc_default is not None:
        flags.DEFINE_enum(
            "malloc_tuning",
            malloc_default,
            list(host_memory.MODES),
            "glibc malloc: 'keep' freed memory for reuse instead of page-faulting "
            "every step's buffers in again; 'keep_one_arena' also for blocks over "
            "64 MB (big batch x length x vocabulary), at the cost of lock "
            "contention; 'off'. Resident memory stays at its peak "
            "(s2s_jax/training/host_memory.py)",
        )

    def wrapped(argv):
        if malloc_default is not None:
            host_memory.keep_freed_memory(flags.FLAGS.malloc_tuning)
        try:
            return main(argv)  # app.run exits with main's return value
        except user_errors() as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"error: {message}", file=sys.stderr, flush=True)
            logging.flush()
            os._exit(2)  # skip interpreter teardown: pending async work must not print tracebacks

    app.run(wrapped, flags_parser=parse_flags)
