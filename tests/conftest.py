"""Suite-wide options: `--run-slow` also runs the tests marked slow (whole training runs, minutes each).

The default suite stays under 15 minutes on 2 cores; .ci/run runs the slow ones as a second step.
"""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (training runs)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a whole training run; runs only with --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="training run: use --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _gin_config_does_not_outlive_a_module():
    """Clears gin's bindings after each test module: library entry points (model_dir.load_model,
    config.parse) configure the process-wide gin state, which must not configure the next module's models."""
    yield
    import gin

    gin.clear_config()
