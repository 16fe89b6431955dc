"""What a user installing the package sees: configs by name, the wheel's contents, one TensorFlow."""
import email.parser
import os
import subprocess
import sys
import zipfile

import gin
import pytest

from rethink_tf.training import config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GIN_CONFIGS = os.path.join(REPO, "gin_configs")
SCRIPTS = ("rethink-train", "rethink-evaluate", "rethink-export", "rethink-predict", "rethink-plot",
           "rethink-figure2", "rethink-pretrain", "rethink-import-weights")


def _repo_configs():
    names = []
    for folder, _, files in os.walk(GIN_CONFIGS):
        names += [os.path.relpath(os.path.join(folder, f), GIN_CONFIGS) for f in files if f.endswith(".gin")]
    return sorted(names)


@pytest.mark.parametrize("name", ["quickstart", "quickstart.gin", "base/data_coco128"])
def test_configs_resolve_by_name(name):
    expected = os.path.join(GIN_CONFIGS, name if name.endswith(".gin") else name + ".gin")
    assert os.path.samefile(config.resolve_gin_file(name), expected)


def test_a_path_wins_over_a_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart.gin").write_text("# mine\n")
    assert config.resolve_gin_file("quickstart.gin") == "quickstart.gin"


def test_unknown_config_lists_the_packaged_ones():
    with pytest.raises(config.ConfigError, match=r"gin file not found: quickstrat .*quickstart.*scratch_6x"):
        config.resolve_gin_file("quickstrat")


def test_parse_accepts_a_config_name():
    try:
        config.parse(["quickstart"], [], finalize=False)
        assert gin.query_parameter("experiment.global_batch_size") > 0
    finally:
        gin.clear_config()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), REPO], check=True, cwd=str(out))
    (path,) = [p for p in out.iterdir() if p.suffix == ".whl"]
    return path


def test_wheel_ships_every_config_and_the_console_scripts(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped = sorted(n[len("rethink_tf/configs/"):] for n in names
                         if n.startswith("rethink_tf/configs/") and n.endswith(".gin"))
        assert shipped == _repo_configs()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = z.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(z.read(metadata).decode())
    for script in SCRIPTS:
        assert f"{script} = rethink_tf." in text
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("tensorflow<") or r.startswith("tensorflow>") for r in requires), requires
    assert not any(r.startswith("tensorflow-cpu") for r in requires), requires
    assert any("and-cuda" in r and 'extra == "gpu"' in r for r in requires), requires
    assert set(meta["Requires-Python"].split(",")) == {">=3.10", "<3.14"}


@pytest.mark.slow
def test_install_beside_tensorflow_adds_no_second_tensorflow(tmp_path, wheel):
    """A GPU machine has `tensorflow` (e.g. tensorflow[and-cuda]); installing the package must not add
    `tensorflow-cpu`, which would write a CPU-only build over the same `tensorflow/` package."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The venv's own site-packages only: no PYTHONPATH pointing back at this checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["tensorflow>=2.21,<2.22"], check=True, env=env)
    subprocess.run(pip + [str(wheel)], check=True, env=env)
    probe = ("import importlib.metadata as m; "
             "print(sorted({d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()"
             " if d.metadata['Name'].lower().replace('_', '-').startswith('tensorflow')}))")
    out = subprocess.run([py, "-c", probe], check=True, capture_output=True, text=True, env=env).stdout
    names = eval(out)  # a printed list of strings
    tf_builds = [n for n in names if n in ("tensorflow", "tensorflow-cpu", "tensorflow-intel")]
    assert tf_builds == ["tensorflow"], names
    # The installed package finds its configs by name outside the repository, and the scripts run.
    resolved = subprocess.run([py, "-c", "from rethink_tf.training import config; "
                               "print(config.resolve_gin_file('quickstart'))"],
                              check=True, capture_output=True, text=True, cwd=str(tmp_path), env=env).stdout.strip()
    assert resolved.startswith(str(venv)) and resolved.endswith("rethink_tf/configs/quickstart.gin"), resolved
    # The console script runs and lists the configs shipped in the wheel.
    proc = subprocess.run([str(venv / "bin" / "rethink-train"), "--gin_file=quickstrat",
                           f"--model_dir={tmp_path / 'run'}"], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "gin file not found: quickstrat" in proc.stderr and "scratch_6x" in proc.stderr, proc.stderr[-2000:]
