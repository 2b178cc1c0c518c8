"""src/default_data.py: the embedded sklearn digits exported as an ImageFolder, once, completely, repaired when
damaged, and never seen half-written by a concurrent export."""
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from conftest import REPO_ROOT, count_images
from src.dataset import get_num_classes
from src.default_data import MARKER, prepare_default_data


def test_digits_export_layout_and_labels(default_data):
    from sklearn.datasets import load_digits

    targets = load_digits().target
    assert get_num_classes(default_data) == 10
    assert count_images(default_data, "train") == 1437 and count_images(default_data, "val") == 360
    seen = {}
    for split in ("train", "val"):
        for label in range(10):
            names = os.listdir(os.path.join(default_data, split, str(label)))
            if split == "val":  # stratified: every class keeps its 20 % share
                assert abs(len(names) - 0.2 * np.sum(targets == label)) <= 1
            for name in names:
                index = int(name[:-4])
                assert targets[index] == label and index not in seen  # right folder, in one split only
                seen[index] = split
    assert len(seen) == 1797
    val3 = os.path.join(default_data, "val", "3")
    img = Image.open(os.path.join(val3, sorted(os.listdir(val3))[0]))
    assert img.mode == "RGB" and img.size == (32, 32) and img.format == "PNG"


def test_digits_export_is_idempotent_and_repairs(tmp_path):
    root = prepare_default_data(str(tmp_path / "digits"))
    marker = os.path.join(root, MARKER)
    stamp = os.stat(marker).st_mtime_ns
    assert prepare_default_data(str(tmp_path / "digits")) == root
    assert os.stat(marker).st_mtime_ns == stamp  # nothing rewritten
    victim = os.path.join(root, "val", "7", sorted(os.listdir(os.path.join(root, "val", "7")))[0])
    os.remove(victim)
    prepare_default_data(root)
    assert os.path.exists(victim) and count_images(root, "val") == 360
    assert json.load(open(marker))["counts"]["val"]["7"] == len(os.listdir(os.path.join(root, "val", "7")))
    assert [n for n in os.listdir(tmp_path) if n != "digits"] == []  # no temp folders left


def test_digits_export_default_root_honours_snnmlp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path / "home"))
    from src.default_data import default_data_root

    assert default_data_root() == str(tmp_path / "home" / "data" / "digits")


def test_concurrent_exports_never_expose_a_partial_folder(tmp_path):
    root = tmp_path / "digits"
    code = ("import sys; from src.default_data import prepare_default_data; "
            "print(prepare_default_data(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    while any(p.poll() is None for p in procs):
        if root.exists():  # whoever is first to rename, the folder appears complete
            assert (root / MARKER).exists()
        time.sleep(0.005)
    outputs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert {out.strip() for out, _ in outputs} == {str(root)}
    assert count_images(root, "train") == 1437 and count_images(root, "val") == 360
    assert os.listdir(tmp_path) == ["digits"]
