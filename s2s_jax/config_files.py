"""Experiment config files loaded by path, the way ml_collections' --config flag loads them.

experiments/ is not a package, so a study that builds on experiments/default.py, and the sweep
runner, load it by path with this one function.
"""

import importlib.util
import os

# The checkout: run.py and experiments/ beside the package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "experiments", "default.py")


def load_config_file(path: str, arg: str = ""):
    """Runs the file's `get_config(arg)`.

    Raises:
      FileNotFoundError: no such file. ValueError: the file has no get_config.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} not found; pass --config=experiments/NAME.py")
    spec = importlib.util.spec_from_file_location(
        "config_" + os.path.splitext(os.path.basename(path))[0], path
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config(arg); it is not an experiment config")
    return module.get_config(arg)
