"""Gin parsing for the command-line apps: fail fast, naming the missing file or the bad binding."""

from __future__ import annotations

import importlib
import inspect
import os

import gin

from rethink_tf.utils.validate import ConfigError  # noqa: F401  (defined with the checks it comes from)

# Modules that register gin configurables; all are imported before parsing so that a misspelled
# configurable or parameter is reported at parse time instead of when the model is built.
CONFIGURABLE_MODULES = (
    "rethink_tf.data.sources",
    "rethink_tf.data.input_pipeline",
    "rethink_tf.data.tfds_source",
    "rethink_tf.data.voc",
    "rethink_tf.data.classification",
    "rethink_tf.modeling.factory",
    "rethink_tf.modeling.tta",
    "rethink_tf.training.distribute",
    "rethink_tf.training.schedule",
    "rethink_tf.training.optimizer",
    "rethink_tf.training.trainer",
    "rethink_tf.training.experiment",
    "rethink_tf.modeling.classifier",
    "rethink_tf.training.classification_task",
)


def import_configurables() -> None:
    """Imports every module of CONFIGURABLE_MODULES, so gin knows all configurables before parsing."""
    for name in CONFIGURABLE_MODULES:
        importlib.import_module(name)


def default_search_paths() -> list[str]:
    """Where configs are looked up by name and gin `include`s resolve: the repository's gin_configs/
    (a source checkout or an editable install) and the package's configs/ (a wheel: setup.py ships
    gin_configs/ there)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = (os.path.join(os.path.dirname(package), "gin_configs"), os.path.join(package, "configs"))
    return [p for p in candidates if os.path.isfile(os.path.join(p, "quickstart.gin"))]


def packaged_configs() -> list[str]:
    """Names of the configs that `--gin_file=NAME` accepts, e.g. 'quickstart', 'base/data_coco128'."""
    names = set()
    for root in default_search_paths():
        for folder, _, files in os.walk(root):
            for f in files:
                if f.endswith(".gin"):
                    rel = os.path.relpath(os.path.join(folder, f), root)
                    names.add(rel[: -len(".gin")].replace(os.sep, "/"))
    return sorted(names)


def resolve_gin_file(name: str) -> str:
    """A path to the gin file `name`: an existing file as given, else a config shipped with the
    package named with or without `.gin` ('quickstart', 'scratch_6x.gin', 'base/data_coco128').

    Raises:
      ConfigError naming `name` and listing the packaged configs.
    """
    if os.path.isfile(name):
        return name
    relative = name if name.endswith(".gin") else name + ".gin"
    if not os.path.isabs(name):
        for root in default_search_paths():
            path = os.path.join(root, relative)
            if os.path.isfile(path):
                return path
    raise ConfigError(f"gin file not found: {name} (neither a file nor a packaged config; packaged: "
                      f"{', '.join(packaged_configs()) or 'none found'})")


def parse(gin_files, gin_bindings, finalize: bool = True) -> None:
    """Resolves the files (paths or packaged config names), then parses files and bindings with
    unknown names as errors.

    Raises:
      ConfigError naming the missing file, unknown configurable or misspelled parameter.
    """
    gin_files = [resolve_gin_file(f) for f in gin_files or []]
    gin_bindings = list(gin_bindings or [])
    import_configurables()
    for path in default_search_paths() + sorted({os.path.dirname(os.path.abspath(f)) for f in gin_files}):
        gin.add_config_file_search_path(path)
    try:
        gin.parse_config_files_and_bindings(gin_files, gin_bindings, skip_unknown=False,
                                            finalize_config=finalize)
    except (ValueError, KeyError, OSError, SyntaxError) as e:
        from rethink_tf.modeling.factory import moved_binding_message
        moved = moved_binding_message(str(e), [_read(f) for f in gin_files] + gin_bindings)
        if moved:
            raise ConfigError(f"{', '.join(gin_files) or 'gin bindings'}: {moved}") from e
        raise ConfigError(f"invalid gin configuration ({', '.join(gin_files) or 'no files'}"
                          f"{'; bindings ' + repr(gin_bindings) if gin_bindings else ''}): {e}") from e
    check_bindings()


_UNBOUND = object()


def _read(path):
    with open(path) as f:
        return f.read()


def _binding(name):
    """The parsed (unscoped) value of binding `name`, macros resolved; _UNBOUND if it is not bound or is
    a reference to another configurable (calling it here could read data, so it is left to call time)."""
    try:
        value = gin.query_parameter(name)
    except ValueError:
        return _UNBOUND
    if isinstance(value, gin.config.ConfigurableReference):
        if value.configurable.name != "macro":
            return _UNBOUND
        value = value.scoped_configurable_fn()
    return value


def _arguments(fn, name, **required):
    """fn's defaults, overridden by `required`, overridden by the bound values of `name.<parameter>`."""
    args = {}
    for param, spec in inspect.signature(fn).parameters.items():
        value = _binding(f"{name}.{param}")
        if value is not _UNBOUND:
            args[param] = value
        elif param in required:
            args[param] = required[param]
        elif spec.default is not inspect.Parameter.empty:
            args[param] = spec.default
    return args


def check_bindings() -> None:
    """Runs the argument checks of the model and the schedule on the parsed bindings, right after parsing.

    Each configurable checks its arguments again when called; checking these two here as well stops a
    run with a bad model or schedule binding before any data is read (loading COCO train2017 takes a
    minute). Scoped bindings (`train/build_rpn.x`) are left to the call-time checks; so are the
    component checks not listed in `factory.component_checks` (they run when the model is built).
    """
    from rethink_tf.modeling import factory
    from rethink_tf.training import schedule
    from rethink_tf.utils import validate

    for name, fn, check in factory.component_checks():
        check(_arguments(fn, name))
    batch = _binding("experiment.global_batch_size")
    batch = 16 if batch is _UNBOUND else batch
    validate.integer("experiment.global_batch_size", batch, minimum=1)
    schedule.paper_schedule(global_batch_size=batch)  # a pure function of its bindings
