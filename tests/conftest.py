"""Shared test fixtures: the repository on ``sys.path``, the exported digits default, tiny ImageFolders."""
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `pytest` from any directory imports `src.` like `python -m pytest`
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(autouse=True)
def _project_logger_restored():
    """Training sets the ``snn_mlp`` logger up for a console (its own handlers, no propagation); a test that
    trains in-process would otherwise hide every later test's project records from ``caplog``."""
    logger = logging.getLogger("snn_mlp")
    saved = logger.propagate, logger.level, list(logger.handlers)
    yield
    for handler in set(logger.handlers) - set(saved[2]):
        handler.close()
    logger.propagate, logger.level, logger.handlers[:] = saved[0], saved[1], saved[2]


@pytest.fixture(scope="session")
def default_data(tmp_path_factory):
    """Root of the sklearn-digits ImageFolder (train/0..9, val/0..9), exported once per test session."""
    from src.default_data import prepare_default_data

    return prepare_default_data(str(tmp_path_factory.mktemp("snnmlp_home") / "digits"))


def solid_color(index):
    """Colour of the ``index``-th image (file order) of a split built with ``solid=True``; multiples of 8
    per channel, so an image stays identifiable after resampling and JPEG/normalisation round trips."""
    return (8 * (index % 32), 8 * (index // 32 % 32), 8 * (index // 1024 % 32) + 64)


def color_index(rgb):
    """Inverse of ``solid_color`` for a measured (possibly slightly perturbed) colour."""
    r, g, b = (int(round(v / 8.0)) for v in rgb)
    return r + 32 * g + 1024 * (b - 8)


def build_image_folder(root, num_classes=3, per_class=None, size=(20, 16), ext=".JPEG", solid=False, seed=0):
    """Write ``root/<split>/cNN/img_KKK<ext>`` and return ``root`` (a Path).

    ``per_class``: ``{split: n}`` or ``{split: [n_class0, n_class1, ...]}``; default 4 train, 2 val per class.
    ``solid=True`` paints the k-th image of a split (class-major file order) in ``solid_color(k)``;
    otherwise images are seeded random noise (so crops and flips change pixels).
    """
    root = Path(root)
    per_class = per_class or {"train": 4, "val": 2}
    rng = np.random.default_rng(seed)
    for split, counts in per_class.items():
        counts = [counts] * num_classes if isinstance(counts, int) else list(counts)
        index = 0
        for label, count in enumerate(counts):
            class_dir = root / split / f"c{label:02d}"
            class_dir.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                if solid:
                    pixels = np.empty((size[1], size[0], 3), np.uint8)
                    pixels[...] = solid_color(index)
                else:
                    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(class_dir / f"img_{k:03d}{ext}", quality=95)
                index += 1
    return root


@pytest.fixture
def image_folder(tmp_path):
    """Factory: ``image_folder(**build_image_folder kwargs)`` builds a tiny ImageFolder under tmp_path."""
    made = []

    def make(**kwargs):
        made.append(build_image_folder(tmp_path / f"data{len(made)}", **kwargs))
        return made[-1]

    return make


def count_images(root, split):
    """Image files the pipeline lists in ``split`` ('train' or 'val') of ``root``, unreadable ones included."""
    from src.data.layout import scan_split, split_folder

    return len(scan_split(split_folder(root, split)))


def load_script(relative_path, name):
    """The repository file ``relative_path`` (an entry point or a tool in scripts/) imported as module ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
