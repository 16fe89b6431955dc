"""Without torch (the `interop` extra), the CLI and the interop tests say so instead of failing obscurely.

torch's absence is simulated: `sys.modules["torch"] = None` makes `import torch` raise ImportError."""
import os
import subprocess
import sys

import pytest

from rethink_tf.utils.validate import InputError
from tests.interop.test_import_cli import REPO


@pytest.mark.parametrize("arch", ["resnet50", "maskrcnn_resnet50_fpn"])
def test_cli_names_the_interop_extra_when_torch_is_missing(monkeypatch, tmp_path, arch):
    from rethink_tf import import_weights
    monkeypatch.setitem(sys.modules, "torch", None)
    (tmp_path / "w.pth").write_bytes(b"not read")
    with pytest.raises(InputError, match=r"needs torch and torchvision: install the `interop` extra"):
        if arch in import_weights.DETECTOR_ARCHS:
            import_weights.import_detector(arch, str(tmp_path / "w.pth"), str(tmp_path / "run"))
        else:
            import_weights.import_weights("torchvision", arch, str(tmp_path / "w.pth"), str(tmp_path / "w.h5"))


@pytest.mark.slow
def test_interop_tests_skip_naming_the_extra_when_torch_is_missing():
    script = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; import pytest; "
              "sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', "
              "'tests/interop/test_torchvision_detector_e2e.py', 'tests/interop/test_torchvision_detector_cli.py', "
              "'tests/interop/test_torchvision_backbones.py']))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 5), done.stdout[-3000:]  # 5: every test skipped at collection
    assert "3 skipped" in done.stdout and "error" not in done.stdout.lower(), done.stdout[-3000:]
    assert done.stdout.count("torch is in the `interop` extra") == 3, done.stdout[-3000:]
