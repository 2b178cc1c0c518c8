"""The ImageFolder layout: ``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>``.

Class indices follow the sorted folder names and images the sorted relative paths, as torchvision's
ImageFolder does, so labels match checkpoints trained with the PyTorch original. The scan follows
symlinked folders but lists every folder and file once (cycles and second paths are skipped with a
warning).
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SPLITS", "LAYOUT", "IMAGE_EXTENSIONS", "split_folder", "class_names", "FileTable", "scan_split",
           "get_num_classes", "check_matching_classes"]

LOGGER = logging.getLogger("snn_mlp")

SPLITS = ("train", "val")
LAYOUT = "expected <root>/train/<class>/<image> and <root>/val/<class>/<image>"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})


def split_folder(dataset_path, split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if dataset_path is None or str(dataset_path) == "":
        raise ValueError(f"dataset_path is empty ({LAYOUT})")
    root = os.path.abspath(os.path.expanduser(str(dataset_path)))
    if not os.path.isdir(root):
        raise ValueError(f"dataset root {root} does not exist or is not a directory ({LAYOUT})")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise ValueError(f"split folder {split_dir} is missing ({LAYOUT})")
    return split_dir


def class_names(split_dir):
    names = sorted(entry.name for entry in os.scandir(split_dir)
                   if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise ValueError(f"no class folders in {split_dir} ({LAYOUT})")
    return names


@dataclass
class FileTable:
    """One split's images. Paths are a fixed-width byte array: compact for a million files."""
    split_dir: str
    classes: list
    rel_paths: np.ndarray
    labels: np.ndarray
    empty_classes: list = field(default_factory=list)

    def __len__(self):
        return len(self.labels)

    def path(self, index):
        return os.path.join(self.split_dir, os.fsdecode(self.rel_paths[index]))


class _Walk:
    """Sorted depth-first listing of class folders that follows symlinks but reaches every directory and every
    file once: a symlink cycle (``loop -> .``) or a second path to the same folder or file (a symlink, a hard
    link) is skipped and reported, so no image counts twice and no label is ambiguous."""

    def __init__(self, split_dir):
        self.split_dir = split_dir
        self.dirs, self.files = set(), {}  # (st_dev, st_ino) -> first relative path
        self.ignored, self.repeated, self.unlistable = [], [], []

    def rel(self, path):
        return os.path.relpath(path, self.split_dir)

    def images(self, folder):
        """Relative paths of the images under ``folder``, in os.walk's top-down order, files sorted."""
        try:
            stat = os.stat(folder)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:  # no permission, vanished: its images cannot be read either
            self.unlistable.append(f"{self.rel(folder)}/ ({error.strerror or error})")
            return []
        if (stat.st_dev, stat.st_ino) in self.dirs:
            self.repeated.append(f"{self.rel(folder)}/ (a folder already listed)")
            return []
        self.dirs.add((stat.st_dev, stat.st_ino))
        found, subdirs = [], []
        for entry in entries:
            rel = self.rel(entry.path)
            try:
                is_dir = entry.is_dir()
                if not is_dir:
                    # A plain file's inode is known without a stat; a symlink's target needs one.
                    target = entry.stat() if entry.is_symlink() else None
                    key = (target.st_dev, target.st_ino) if target else (stat.st_dev, entry.inode())
            except OSError:  # a dangling symlink: left for the reader to report as unreadable
                is_dir, key = False, None
            if entry.name.startswith("."):
                self.ignored.append(rel)
            elif is_dir:
                subdirs.append(entry.path)
            elif os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
                self.ignored.append(rel)
            elif key is not None and key in self.files:
                self.repeated.append(f"{rel} (the same file as {self.files[key]})")
            else:
                if key is not None:
                    self.files[key] = rel
                found.append(rel)
        for subdir in subdirs:
            found += self.images(subdir)
        return found


def scan_split(split_dir):
    classes = class_names(split_dir)
    LOGGER.info("scanning %s (%d classes)", split_dir, len(classes))
    walk = _Walk(split_dir)
    rel_paths, labels, empty = [], [], []
    for label, name in enumerate(classes):
        images = walk.images(os.path.join(split_dir, name))
        if not images:
            empty.append(name)
        rel_paths += [os.fsencode(rel) for rel in images]
        labels += [label] * len(images)
    if walk.ignored:
        LOGGER.warning("%d entries without an image extension ignored under %s: first %s", len(walk.ignored),
                       split_dir, ", ".join(walk.ignored[:5]))
    if walk.unlistable:
        LOGGER.warning("%d folders under %s could not be listed: first %s", len(walk.unlistable), split_dir,
                       ", ".join(walk.unlistable[:3]))
    if walk.repeated:
        LOGGER.warning("%d paths under %s skipped as symlink cycles or second paths to a folder or file already "
                       "listed: first %s", len(walk.repeated), split_dir, ", ".join(walk.repeated[:3]))
    if not labels:
        raise ValueError(f"no images (extensions {', '.join(sorted(IMAGE_EXTENSIONS))}) in the class folders "
                         f"of {split_dir} ({LAYOUT})")
    return FileTable(split_dir, classes, np.array(rel_paths, dtype=np.bytes_), np.array(labels, np.int32), empty)


def get_num_classes(dataset_path):
    """Number of class folders of the dataset (from ``train/``, or ``val/`` when there is no ``train/``)."""
    try:
        return len(class_names(split_folder(dataset_path, "train")))
    except ValueError as train_error:
        try:
            return len(class_names(split_folder(dataset_path, "val")))
        except ValueError:
            raise train_error from None


def check_matching_classes(dataset_path, split, classes):
    # Different class folders in train/ and val/ would silently scramble labels between the two.
    other = SPLITS[1 - SPLITS.index(split)]
    other_dir = os.path.join(os.path.abspath(os.path.expanduser(str(dataset_path))), other)
    if not os.path.isdir(other_dir):
        return
    other_classes = sorted(e.name for e in os.scandir(other_dir) if e.is_dir() and not e.name.startswith("."))
    if other_classes and other_classes != classes:
        only_here = sorted(set(classes) - set(other_classes))[:5]
        only_there = sorted(set(other_classes) - set(classes))[:5]
        raise ValueError(f"class folders of {split}/ and {other}/ differ under {dataset_path} "
                         f"(only in {split}: {only_here}, only in {other}: {only_there}); labels would not match")
