"""The plot command as a user meets it: the table without matplotlib, unknown metrics named, exit 2."""
import os
import subprocess
import sys

import pytest

from rethink_tf.evaluation import coco_evaluator, plot

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture()
def runs(tmp_path):
    for name, aps in (("scratch", (1.0, 5.0)), ("pretrained", (4.0, 6.0))):
        for step, ap in zip((10, 20), aps):
            coco_evaluator.append_metrics_jsonl(str(tmp_path / name / "metrics.jsonl"), {
                "step": step, "images_seen": step * 16.0, "bbox": {"AP": ap, "AP50": 2 * ap}, "top1": ap})
    return [str(tmp_path / "scratch"), str(tmp_path / "pretrained")]


def test_without_matplotlib_the_table_is_printed_and_written(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = plot.plot(runs, str(tmp_path / "ap.png"), metric="bbox/AP50", x="images")
    assert out.endswith("ap.csv")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "images_seen", "bbox/AP50"]
    assert [line.split() for line in lines[1:]] == [
        ["scratch", "160", "2.00"], ["scratch", "320", "10.00"],
        ["pretrained", "160", "8.00"], ["pretrained", "320", "12.00"]]
    assert open(out).read().splitlines()[1] == "scratch,160.0,2.0"


def test_a_top_level_metric_plots(runs):
    assert plot.curve(runs[0], "top1") == [(10.0, 1.0), (20.0, 5.0)]


def test_an_unknown_metric_lists_the_known_ones(runs, tmp_path):
    with pytest.raises(plot.InputError, match=r"--metric=bbox/APX: .*known metrics: bbox/AP, bbox/AP50, top1$"):
        plot.plot(runs, str(tmp_path / "ap.png"), metric="bbox/APX")


def test_command_exits_2_naming_the_metric(runs, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "rethink_tf.evaluation.plot", f"--model_dirs={','.join(runs)}",
                           "--metric=segm/AP", f"--out={tmp_path / 'x.png'}"], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 2, proc.stderr
    assert "error: --metric=segm/AP" in proc.stderr and "known metrics: bbox/AP, bbox/AP50, top1" in proc.stderr


def test_with_matplotlib_a_png_is_drawn(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra (in the test extra) draws PNGs")
    out = plot.plot(runs, str(tmp_path / "ap.png"), x="images")
    with open(out, "rb") as f:
        assert out.endswith(".png") and f.read(8) == b"\x89PNG\r\n\x1a\n"
