"""`python -m rethink_tf.import_weights`: files written, report printed, bad input one line + exit 2."""
import os
import pathlib
import subprocess
import sys

import gin
import pytest

from tests.interop.test_detectron_pkl import detectron_blob_shapes, write_pkl

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rethink_tf.import_weights", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_gin_file_of_every_arch_parses():
    """The .gin written next to the output binds only existing configurables to valid values."""
    from rethink_tf.data import input_pipeline  # noqa: F401 (registers build_dataset)
    from rethink_tf.interop import archs
    from rethink_tf.modeling import factory  # noqa: F401 (registers build_model, build_backbone)
    from rethink_tf.training import experiment  # noqa: F401 (registers experiment)
    from rethink_tf.data import preprocess
    for source, table in archs.ARCHS.items():
        for arch, spec in table.items():
            gin.clear_config()
            try:
                gin.parse_config(archs.gin_bindings(spec, "/tmp/w.h5"))
                norm = preprocess.pixel_normalization(gin.query_parameter("build_dataset.divide_by_std"))
                assert norm == (spec.pixel_mean, spec.pixel_std, spec.channel_order), (source, arch)
                if spec.backbone["kind"] == "resnet":
                    assert gin.query_parameter("build_backbone.stride_in_1x1") == spec.backbone["stride_in_1x1"]
            finally:
                gin.clear_config()


@pytest.mark.slow
def test_cli_writes_files_and_names_the_tensor_that_does_not_fit(tmp_path):
    write_pkl(tmp_path / "R-50-GN.pkl", detectron_blob_shapes(50, gn=True))
    out = tmp_path / "w" / "r50_gn.h5"
    done = _run("--source=detectron", "--arch=R-50-GN", f"--input={tmp_path / 'R-50-GN.pkl'}", f"--output={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "matched 159, reshaped 53, derived 0, unused in source 3" in done.stdout
    assert "unused in source: conv1_w_momentum, pred_b, pred_w" in done.stdout
    assert out.exists() and (tmp_path / "w" / "r50_gn.gin").exists()
    assert "input_normalization.channel_order = 'bgr'" in (tmp_path / "w" / "r50_gn.gin").read_text()
    assert (tmp_path / "w" / "r50_gn.report.json").exists()

    shapes = detectron_blob_shapes(50, gn=True)
    shapes["res4_2_branch2c_gn_s"] = (512,)
    write_pkl(tmp_path / "bad.pkl", shapes)
    done = _run("--source=detectron", "--arch=R-50-GN", f"--input={tmp_path / 'bad.pkl'}",
                f"--output={tmp_path / 'bad.h5'}")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "'res4_2_branch2c_gn_s' of shape (512,)" in lines[0], done.stderr[-2000:]
    assert "res4_2/conv3/norm/gamma" in lines[0]
    done = _run("--source=detectron", "--arch=R-51", f"--input={tmp_path / 'bad.pkl'}", f"--output={out}")
    assert done.returncode == 2 and "--arch for --source=detectron must be one of" in done.stderr
