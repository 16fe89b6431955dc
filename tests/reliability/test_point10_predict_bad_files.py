"""Issue 8.10: `rethink_tf.predict` on several files of which some are bad.

Fault: a missing file, a 0-byte file, a text file named .jpg and a 1x400 PNG among good images.
Before, predict stopped at the first bad file and wrote no detections.json. After, it reports each
bad file with the reason, writes the good images' results and detections.json, and exits 1.
"""
import json
import os

import numpy as np
from PIL import Image

from reliability_helpers import run_module


def test_predict_goes_on_past_bad_files(exported_run, tmp_path):
    rng = np.random.default_rng(0)
    good = []
    for name in ("000000000011.png", "000000000012.jpg"):
        path = tmp_path / name
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
        good.append(str(path))
    missing = str(tmp_path / "missing.jpg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    thin = tmp_path / "thin.png"
    Image.fromarray(np.zeros((1, 400, 3), np.uint8)).save(thin)
    out = tmp_path / "vis"
    images = [good[0], missing, str(empty), str(text), str(thin), good[1]]
    proc = run_module("rethink_tf.predict", f"--saved_model={exported_run}", f"--output_dir={out}",
                      *[f"--image={p}" for p in images])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "4 of 6 images failed" in proc.stderr
    for path, reason in ((missing, "No such file"), (str(empty), "empty file"),
                         (str(text), "not an encoded image"), (str(thin), "1x400 px")):
        lines = [line for line in proc.stderr.splitlines() if line.startswith(f"error: --image={path}: ")]
        assert lines and reason in lines[0], (path, proc.stderr[-3000:])
    with open(out / "detections.json") as f:
        results = json.load(f)
    assert {r["image_id"] for r in results} == {11, 12}
    assert sorted(os.listdir(out)) == ["000000000011.json", "000000000011.png", "000000000012.json",
                                       "000000000012.png", "detections.json"]
