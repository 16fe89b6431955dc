"""Gin parsing for the command-line apps: fail fast, naming the missing file or the bad binding."""

from __future__ import annotations

import importlib
import os

import gin

from rethink_tf.utils.validate import ConfigError  # noqa: F401  (defined with the checks it comes from)

# Modules that register gin configurables; all are imported before parsing so that a misspelled
# configurable or parameter is reported at parse time instead of when the model is built.
CONFIGURABLE_MODULES = (
    "rethink_tf.data.sources",
    "rethink_tf.data.input_pipeline",
    "rethink_tf.data.tfds_source",
    "rethink_tf.modeling.factory",
    "rethink_tf.training.distribute",
    "rethink_tf.training.schedule",
    "rethink_tf.training.optimizer",
    "rethink_tf.training.trainer",
    "rethink_tf.training.experiment",
)


def import_configurables() -> None:
    """Imports every module of CONFIGURABLE_MODULES, so gin knows all configurables before parsing."""
    for name in CONFIGURABLE_MODULES:
        importlib.import_module(name)


def default_search_paths() -> list[str]:
    """gin include search paths: the repository's gin_configs/ and the package's gin/."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [p for p in (os.path.join(os.path.dirname(here), "gin_configs"), os.path.join(here, "gin"))
            if os.path.isdir(p)]


def parse(gin_files, gin_bindings, finalize: bool = True) -> None:
    """Checks the files exist, then parses files and bindings with unknown names as errors.

    Raises:
      ConfigError naming the missing file, unknown configurable or misspelled parameter.
    """
    gin_files = list(gin_files or [])
    gin_bindings = list(gin_bindings or [])
    missing = [f for f in gin_files if not os.path.isfile(f)]
    if missing:
        raise ConfigError(f"gin file(s) not found: {', '.join(missing)}")
    import_configurables()
    for path in default_search_paths() + sorted({os.path.dirname(os.path.abspath(f)) for f in gin_files}):
        gin.add_config_file_search_path(path)
    try:
        gin.parse_config_files_and_bindings(gin_files, gin_bindings, skip_unknown=False,
                                            finalize_config=finalize)
    except (ValueError, KeyError, OSError, SyntaxError) as e:
        raise ConfigError(f"invalid gin configuration ({', '.join(gin_files) or 'no files'}"
                          f"{'; bindings ' + repr(gin_bindings) if gin_bindings else ''}): {e}") from e
