"""Data pipeline: shapes, determinism, mixing, sharding, bad files, errors (the digits export itself:
test_default_data.py)."""
import io
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, color_index, count_images
from src.data.aug import resolve_aug
from src.data.sampler import EpochBatchSampler, EpochKeySampler
from src.data.transforms import EvalTransform, TrainTransform, random_resized_crop_box
from src.dataset import (DEFAULT_AUG, IMAGENET_MEAN, IMAGENET_STD, MixupCutmix, create_dataset, get_num_classes,
                         parse_rand_augment, unreadable_report)

# Everything random off except the random resized crop, which cannot be switched off.
PLAIN = dict(hflip=0, auto_augment=None, color_jitter=None, reprob=0, mixup=0, cutmix=0, label_smoothing=0)
MEAN = np.array(IMAGENET_MEAN, np.float32).reshape(3, 1, 1) * 255
STD = np.array(IMAGENET_STD, np.float32).reshape(3, 1, 1) * 255


def batches(dataset, num_epochs=1):
    iterator = dataset.create_tuple_iterator(num_epochs=num_epochs, output_numpy=True)
    return [list(iterator) for _ in range(num_epochs)] if num_epochs > 1 else list(iterator)


def assert_same_batches(got, expected):
    for (image, label), (image_expected, label_expected) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(image, image_expected)
        np.testing.assert_array_equal(label, label_expected)


def first_batch(dataset):
    return next(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))


def pixels(image_chw):
    """Normalised CHW float -> HWC 0..255 float."""
    return (image_chw * STD + MEAN).transpose(1, 2, 0)


def identities(images):
    """Solid-colour image -> its index in the split (see conftest.solid_color)."""
    return [color_index(pixels(img).reshape(-1, 3).mean(0)) for img in images]


# ---------------------------------------------------------------------------------------------- train

def test_train_full_recipe_shapes_and_soft_targets(image_folder):
    root = image_folder(num_classes=3, per_class={"train": 6, "val": 1})
    dataset = create_dataset(root, True, batch_size=4, image_size=16, num_classes=3, num_workers=1)
    assert dataset.get_col_names() == ["image", "label"]
    assert dataset.get_dataset_size() == 18 // 4  # remainder dropped
    got = batches(dataset)
    assert len(got) == 4
    floor = DEFAULT_AUG["label_smoothing"] / 3
    for image, label in got:
        assert image.shape == (4, 3, 16, 16) and image.dtype == np.float32
        assert label.shape == (4, 3) and label.dtype == np.float32
        np.testing.assert_allclose(label.sum(1), 1.0, atol=1e-6)
        assert label.min() >= floor - 1e-6
        assert np.isfinite(image).all()


def test_same_seed_same_batches_whatever_the_worker_count(image_folder):
    root = image_folder(num_classes=2, per_class={"train": 8})
    make = lambda seed, workers: create_dataset(root, True, 4, image_size=16, num_classes=2, seed=seed,
                                                num_workers=workers)
    (image_a, label_a), (image_b, label_b) = first_batch(make(0, 1)), first_batch(make(0, 1))
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(label_a, label_b)
    # Worker processes draw from the same per-sample seeds: identical batches.
    image_mp, label_mp = first_batch(make(0, 2))
    np.testing.assert_array_equal(image_a, image_mp)
    np.testing.assert_array_equal(label_a, label_mp)
    assert not np.array_equal(image_a, first_batch(make(1, 1))[0])


@pytest.mark.parametrize("train", [True, False])
def test_every_batch_of_every_epoch_is_the_same_whatever_the_worker_count(image_folder, train):
    # Several threads load a batch and queue the next one; over two epochs (the queued batch never crosses an
    # epoch's end) and with a short last eval batch, every batch equals one thread's.
    root = image_folder(num_classes=2, per_class={"train": 9, "val": 5})
    runs = [batches(create_dataset(root, train, 4, image_size=16, num_classes=2, seed=3, num_workers=workers),
                    num_epochs=2) for workers in (1, 2, 3)]
    assert [len(epoch) for epoch in runs[0]] == ([4, 4] if train else [3, 3])
    for other in runs[1:]:
        for epoch, epoch_one in zip(other, runs[0]):
            assert_same_batches(epoch, epoch_one)


def test_two_iterators_of_one_dataset_at_once_each_get_every_batch(image_folder):
    # Their loader threads share the source (and its queue of loaded-ahead batches).
    root = image_folder(num_classes=2, per_class={"train": 12})
    dataset = create_dataset(root, True, 2, image_size=8, num_classes=2, seed=5, num_workers=2, aug=PLAIN)
    expected = batches(dataset)
    first, second = (dataset.create_tuple_iterator(num_epochs=1, output_numpy=True) for _ in range(2))
    got = [[], []]
    for _ in expected:
        for index, iterator in enumerate((first, second)):
            got[index].append(next(iterator))
    for run in got:
        assert_same_batches(run, expected)


def test_batches_loaded_out_of_order_are_the_batches_in_order(image_folder):
    from src import dataset as dataset_module

    root = image_folder(num_classes=2, per_class={"train": 9})
    dataset = create_dataset(root, True, 2, image_size=8, num_classes=2, seed=4, num_workers=2, aug=PLAIN)
    in_order = batches(dataset)
    made = []
    real = dataset_module._BatchSource
    with pytest.MonkeyPatch.context() as patch:  # catch the source the pipeline is built on
        patch.setattr(dataset_module, "_BatchSource", lambda *args: made.append(real(*args)) or made[-1])
        create_dataset(root, True, 2, image_size=8, num_classes=2, seed=4, num_workers=2, aug=PLAIN)
    source = made[0]
    for batch in (2, 0, 3, 1, 1):  # jumps drop the batch queued for elsewhere
        image, label = source[batch]
        np.testing.assert_array_equal(image, in_order[batch][0])
        np.testing.assert_array_equal(label, in_order[batch][1])


def test_default_workers_stay_single_for_cheap_samples(image_folder, caplog):
    root = image_folder(num_classes=2, per_class={"train": 8}, size=(8, 8))
    with caplog.at_level(logging.INFO, logger="snn_mlp"):
        create_dataset(root, True, 4, image_size=8, num_classes=2)
    assert any("workers=1" in message for message in caplog.messages)


def test_epochs_reshuffle_and_reaugment(image_folder):
    root = image_folder(num_classes=2, per_class={"train": 8})
    epoch0, epoch1 = batches(create_dataset(root, True, 4, image_size=16, num_classes=2, num_workers=1),
                             num_epochs=2)
    assert len(epoch0) == len(epoch1) == 4
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])


def test_label_smoothing_targets_follow_the_image(image_folder):
    root = image_folder(num_classes=4, per_class={"train": 3}, solid=True, ext=".png")
    dataset = create_dataset(root, True, 12, image_size=8, num_classes=4, num_workers=1,
                             aug=dict(PLAIN, label_smoothing=0.1))
    image, label = first_batch(dataset)
    true_class = np.array(identities(image)) // 3  # 3 images per class, class-major
    on, off = 1 - 0.1 + 0.1 / 4, 0.1 / 4
    expected = np.full((12, 4), off, np.float32)
    expected[np.arange(12), true_class] = on
    np.testing.assert_allclose(label, expected, atol=1e-6)
    assert sorted(identities(image)) == list(range(12))  # one epoch visits every image once


def _plain_and_mixed(root, **mix):
    make = lambda aug: create_dataset(root, True, 8, image_size=12, num_classes=4, seed=3, num_workers=1, aug=aug)
    base = dict(PLAIN, label_smoothing=0.1)
    plain_image, plain_label = first_batch(make(base))
    mixed_image, mixed_label = first_batch(make(dict(base, **mix)))
    return plain_image, plain_label.argmax(1), mixed_image, mixed_label


def _lam_from_targets(hard, mixed_label, num_classes=4, smoothing=0.1):
    on, off = 1 - smoothing + smoothing / num_classes, smoothing / num_classes
    rows = np.flatnonzero(hard != hard[::-1])
    assert rows.size, "the batch needs two classes to read lambda back"
    return (mixed_label[rows[0], hard[rows[0]]] - off) / (on - off)


def test_mixup_blends_with_the_reversed_batch(image_folder):
    root = image_folder(num_classes=4, per_class={"train": 4})
    plain, hard, mixed, mixed_label = _plain_and_mixed(root, mixup=0.8, cutmix=0)
    lam = _lam_from_targets(hard, mixed_label)
    assert 0 < lam < 1
    np.testing.assert_allclose(mixed, lam * plain + (1 - lam) * plain[::-1], atol=1e-5)
    off = 0.1 / 4
    on = 1 - 0.1 + off
    expected = np.full((8, 4), off)
    for i in range(8):
        expected[i, hard[i]] += lam * (on - off)
        expected[i, hard[::-1][i]] += (1 - lam) * (on - off)
    np.testing.assert_allclose(mixed_label, expected, atol=1e-6)
    np.testing.assert_allclose(mixed_label.sum(1), 1.0, atol=1e-6)
    untouched = [c for c in range(4) if c not in (hard[0], hard[-1])]
    np.testing.assert_allclose(mixed_label[0, untouched], off, atol=1e-7)  # the smoothing floor


def test_cutmix_pastes_one_box_from_the_reversed_batch(image_folder):
    root = image_folder(num_classes=4, per_class={"train": 4})
    plain, hard, mixed, mixed_label = _plain_and_mixed(root, mixup=0, cutmix=1.0)
    changed = np.argwhere((mixed != plain).any(axis=(0, 1)))
    assert changed.size, "this seed must draw a non-empty box"
    (top, left), (bottom, right) = changed.min(0), changed.max(0) + 1
    np.testing.assert_array_equal(mixed[:, :, top:bottom, left:right], plain[::-1][:, :, top:bottom, left:right])
    outside = np.ones(plain.shape[2:], bool)
    outside[top:bottom, left:right] = False
    np.testing.assert_array_equal(mixed[:, :, outside], plain[:, :, outside])
    lam = _lam_from_targets(hard, mixed_label)
    np.testing.assert_allclose(lam, 1 - (bottom - top) * (right - left) / 144, atol=1e-5)
    np.testing.assert_allclose(mixed_label.sum(1), 1.0, atol=1e-6)


def test_mixing_switch_and_probability():
    rng = np.random.default_rng(0)
    always_cutmix = MixupCutmix(10, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=1.0)
    never_mix = MixupCutmix(10, mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.0)
    off = MixupCutmix(10, mixup_alpha=0, cutmix_alpha=0)
    for _ in range(20):
        assert always_cutmix.draw(rng, 16, 16)[1] is not None
        assert never_mix.draw(rng, 16, 16) == (1.0, None)
        assert off.draw(rng, 16, 16) == (1.0, None)


def test_flip_and_normalisation_against_numpy(image_folder):
    # A square image with scale_min=1 falls back to the whole image: the crop is the identity.
    root = image_folder(num_classes=1, per_class={"train": 1}, size=(16, 16), ext=".png")
    original = np.asarray(Image.open(root / "train" / "c00" / "img_000.png"), np.float32)
    expected = ((original.transpose(2, 0, 1) - MEAN) / STD)
    for hflip, reference in ((0.0, expected), (1.0, expected[:, :, ::-1])):
        aug = dict(PLAIN, hflip=hflip, scale_min=1.0)
        image, _ = first_batch(create_dataset(root, True, 1, image_size=16, num_classes=1, num_workers=1, aug=aug))
        np.testing.assert_allclose(image[0], reference, atol=1e-4)


def test_random_erasing_fills_a_box_with_noise(image_folder):
    root = image_folder(num_classes=2, per_class={"train": 4}, solid=True, ext=".png", size=(24, 24))
    aug = dict(PLAIN, reprob=1.0, scale_min=1.0)
    image, _ = first_batch(create_dataset(root, True, 8, image_size=24, num_classes=2, num_workers=1, aug=aug))
    for sample in image:
        solid = np.median(sample.reshape(3, -1), axis=1).reshape(3, 1, 1)  # erasing covers < 1/2
        erased = np.abs(sample - solid).max(0) > 1e-3
        rows, cols = np.flatnonzero(erased.any(1)), np.flatnonzero(erased.any(0))
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert 0.02 * 576 * 0.5 <= box <= 576 / 3 + 24  # rounding of the box sides
        patch = sample[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert abs(patch.mean()) < 0.6 and 0.5 < patch.std() < 1.5  # N(0, 1) noise


def test_rand_augment_spec():
    ra = parse_rand_augment("rand-m9-mstd0.5-inc1")
    assert (ra.num_layers, ra.magnitude, ra.magnitude_std) == (2, 9.0, 0.5)
    assert "PosterizeIncreasing" in ra.ops and "Posterize" not in ra.ops
    assert "Posterize" in parse_rand_augment("rand-m5-n3").ops
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    outs = [np.asarray(parse_rand_augment("rand-m9-mstd0.5-inc1-p1")(img, np.random.default_rng(s)))
            for s in (0, 0, 1)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2]) and not np.array_equal(outs[0], np.asarray(img))
    for spec in ("autoaug-v0", "rand-x5", "rand-m"):
        with pytest.raises(ValueError, match="auto_augment"):
            parse_rand_augment(spec)


def _photo_like_jpeg(width, height, seed=0):
    """Smooth colour fields plus mild noise, JPEG-encoded like a photo (quality 90)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-6, 7, (height, width, 3)), 0, 255).astype(np.uint8)
    data = io.BytesIO()
    Image.fromarray(noisy).save(data, "JPEG", quality=90)
    return data.getvalue()


def test_reduced_jpeg_decode_matches_the_full_decode_crop(tmp_path):
    # Crops at least twice the output size are decoded at 1/2..1/8 scale (libjpeg DCT scaling); the result
    # must stay what a full decode + bicubic crop-resize gives, up to resampling noise.
    data = _photo_like_jpeg(640, 480)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    transform = TrainTransform(64, resolve_aug(PLAIN))
    reduced = 0
    for seed in range(12):
        box = random_resized_crop_box(640, 480, transform.scale, np.random.default_rng(seed))
        reduced += min(box[2] - box[0], box[3] - box[1]) >= 128
        reference = np.asarray(full.resize((64, 64), Image.Resampling.BICUBIC, box=box), np.float32)
        got = np.asarray(transform.geometry(Image.open(io.BytesIO(data)), np.random.default_rng(seed)), np.float32)
        assert got.shape == (64, 64, 3)
        assert np.abs(got - reference).mean() < 1.0, seed  # levels of 255
    assert reduced >= 3  # the reduced decode was exercised


def test_eval_one_resampling_matches_resize_then_crop():
    data = _photo_like_jpeg(500, 375, seed=1)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    resized = img.resize((341, 256), Image.Resampling.BICUBIC)  # shorter side int(224 / 0.875) = 256
    reference = np.asarray(resized.crop((58, 16, 282, 240)), np.float32)  # torchvision's centre crop
    got = np.asarray(EvalTransform(224, resolve_aug(None)).geometry(Image.open(io.BytesIO(data))), np.float32)
    assert np.abs(got - reference).max() <= 2 and np.abs(got - reference).mean() < 0.1


@pytest.mark.parametrize("batch", [8, 7])
def test_in_place_mixup_equals_the_out_of_place_formula(batch):
    x = np.random.default_rng(0).standard_normal((batch, 3, 6, 6)).astype(np.float32)
    mixing = MixupCutmix(5, mixup_alpha=0.8, cutmix_alpha=0, seed=4)
    lam, box = mixing.draw(np.random.default_rng([4, 3, 11]), 6, 6)  # the batch stream of key 11
    assert box is None and 0 < lam < 1
    expected = lam * x + (1.0 - lam) * x[::-1]
    mixing.mix(x, np.arange(batch) % 5, 11)
    np.testing.assert_array_equal(x, expected)


# ----------------------------------------------------------------------------------------------- eval

def test_eval_keeps_every_image_in_file_order(image_folder):
    root = image_folder(num_classes=3, per_class={"train": 1, "val": [8, 8, 7]}, size=(30, 20), ext=".png")
    dataset = create_dataset(root, False, batch_size=8, image_size=16, num_classes=3, num_workers=1)
    assert dataset.get_dataset_size() == 3
    got = batches(dataset)
    assert [len(label) for _, label in got] == [8, 8, 7]
    labels = np.concatenate([label for _, label in got])
    assert labels.dtype == np.int32 and labels.tolist() == [0] * 8 + [1] * 8 + [2] * 7
    # Reference: shorter side 20 -> int(16 / 0.875) = 18 gives 27x18; torchvision's centre crop puts
    # the 16x16 window at left round(5.5) = 6, top round(1.0) = 1.
    source = Image.open(root / "val" / "c01" / "img_000.png").resize((27, 18), Image.Resampling.BICUBIC)
    window = np.asarray(source, np.float32)[1:17, 6:22].transpose(2, 0, 1)
    np.testing.assert_allclose(got[1][0][0], (window - MEAN) / STD, atol=1e-4)


def test_eval_crop_pct_one_keeps_the_whole_image(image_folder):
    root = image_folder(num_classes=1, per_class={"val": 1}, size=(20, 20), ext=".png")
    image, _ = first_batch(create_dataset(root, False, 1, image_size=20, num_classes=1, num_workers=1,
                                          aug={"crop_pct": 1.0}))
    original = np.asarray(Image.open(root / "val" / "c00" / "img_000.png"), np.float32).transpose(2, 0, 1)
    np.testing.assert_allclose(image[0], (original - MEAN) / STD, atol=1e-4)


# ------------------------------------------------------------------------------------------- sharding

def test_eval_shards_are_disjoint_and_cover(image_folder):
    root = image_folder(num_classes=3, per_class={"val": [8, 8, 7]}, solid=True, ext=".png")
    shards = []
    for rank in range(3):
        dataset = create_dataset(root, False, 4, image_size=8, num_classes=3, rank_id=rank, rank_size=3,
                                 num_workers=1)
        shards.append([i for image, _ in batches(dataset) for i in identities(image)])
    assert shards == [list(range(rank, 23, 3)) for rank in range(3)]


@pytest.mark.parametrize("num_images", [24, 23])
def test_train_shards_are_disjoint_equal_and_cover(image_folder, num_images):
    root = image_folder(num_classes=2, per_class={"train": [12, num_images - 12]}, solid=True, ext=".png")
    shards = []
    for rank in range(2):
        dataset = create_dataset(root, True, 1, image_size=8, num_classes=2, rank_id=rank, rank_size=2,
                                 num_workers=1, aug=PLAIN)
        assert dataset.get_dataset_size() == num_images // 2  # equal on every rank: ranks stay in step
        shards.append({i for image, _ in batches(dataset) for i in identities(image)})
    assert len(shards[0]) == len(shards[1]) == num_images // 2
    assert not shards[0] & shards[1]
    assert len(shards[0] | shards[1]) == num_images - num_images % 2  # at most rank_size-1 left this epoch
    assert shards[0] | shards[1] <= set(range(num_images))


def test_sampler_keys_encode_epoch_and_shard():
    samplers = [EpochKeySampler(23, rank, 3, shuffle=True, seed=5) for rank in range(3)]
    epochs = [[list(iter(sampler)) for _ in range(2)] for sampler in samplers]  # each __iter__ is one epoch
    for epoch in range(2):
        shards = [epochs[rank][epoch] for rank in range(3)]
        assert [len(shard) for shard in shards] == [len(sampler) for sampler in samplers] == [7, 7, 7]
        keys = [key for shard in shards for key in shard]
        assert all(key // 23 == epoch for key in keys)
        assert len({key % 23 for key in keys}) == 21  # disjoint; 23 % 3 images wait for another epoch
    assert [k % 23 for k in epochs[0][0]] != [k % 23 for k in epochs[0][1]]  # reshuffled
    eval_sampler = EpochKeySampler(23, 1, 3, shuffle=False, seed=5)
    assert len(eval_sampler) == 8 and list(iter(eval_sampler)) == list(range(1, 23, 3))


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_batch_sampler_cuts_the_key_sampler_into_consecutive_batches(drop_remainder):
    keys = EpochKeySampler(23, 1, 3, shuffle=True, seed=5)
    sampler = EpochBatchSampler(EpochKeySampler(23, 1, 3, shuffle=True, seed=5), 3, drop_remainder)
    assert len(sampler) == (2 if drop_remainder else 3)
    for epoch in range(2):
        ids = list(iter(sampler))
        assert ids == list(range(epoch * len(sampler), (epoch + 1) * len(sampler)))
        expected = list(iter(keys))  # the same epoch of the key sampler
        if drop_remainder:
            expected = expected[:6]
        assert [key for batch_id in ids for key in sampler.keys(batch_id)] == expected


# ------------------------------------------------------------------------------------- unreadable files

def _add_bad_files(class_dir):
    (class_dir / "garbage.JPEG").write_bytes(b"this is not an image" * 10)
    real = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(real, "JPEG")
    (class_dir / "truncated.JPEG").write_bytes(real.getvalue()[:len(real.getvalue()) // 2])
    with pytest.raises(OSError):  # the truncated file really is unreadable
        Image.open(class_dir / "truncated.JPEG").convert("RGB")
    return [str(class_dir / "garbage.JPEG"), str(class_dir / "truncated.JPEG")]


def test_eval_marks_unreadable_images_and_reports_them(image_folder, caplog):
    root = image_folder(num_classes=2, per_class={"val": 3})
    bad = _add_bad_files(root / "val" / "c00")
    unreadable_report(log=False)  # forget earlier tests' records
    with caplog.at_level(logging.WARNING, logger="snn_mlp"):
        got = batches(create_dataset(root, False, 4, image_size=8, num_classes=2, num_workers=1))
        labels = np.concatenate([label for _, label in got])
        # c00 sorted: garbage, img_000..002, truncated; c01: img_000..002.
        assert labels.tolist() == [-1, 0, 0, 0, -1, 1, 1, 1]
        summary = unreadable_report("val")
    assert summary.count == 2 and sorted(summary.paths) == sorted(bad)
    assert all(any(path in message for message in caplog.messages) for path in bad)
    assert any("val: 2 unreadable images skipped: first paths" in message for message in caplog.messages)
    assert unreadable_report("val").count == 0  # each report covers what happened since the last one


def test_train_substitutes_unreadable_images(image_folder):
    root = image_folder(num_classes=2, per_class={"train": 3})
    bad = _add_bad_files(root / "train" / "c01")
    unreadable_report(log=False)
    # Two worker threads: every record must reach the report.
    dataset = create_dataset(root, True, 2, image_size=8, num_classes=2, num_workers=2, aug=PLAIN)
    got = batches(dataset)
    assert len(got) == 4  # 8 files, none lost: a readable image takes each bad one's place
    for _, label in got:
        np.testing.assert_allclose(label.sum(1), 1.0)
    summary = unreadable_report("train")
    assert summary.count == 2 and sorted(summary.paths) == sorted(bad)


def test_only_unreadable_images_is_a_one_line_error_before_training(image_folder):
    root = image_folder(num_classes=1, per_class={"train": 0})
    _add_bad_files(root / "train" / "c00")
    # A ValueError from create_dataset (train.py prints it as one line), not a pipeline stack at the first batch.
    with pytest.raises(ValueError, match="none of the 2 images under .* can be read") as error:
        create_dataset(root, True, 1, image_size=8, num_classes=1, num_workers=1, aug=PLAIN)
    assert "\n" not in str(error.value)
    unreadable_report(log=False)


def test_a_long_run_of_unreadable_training_images_is_bridged(image_folder):
    # 70 corrupt files in a row (more than the 64 substitutes the loader used to try before failing with a
    # pipeline stack), then readable ones: every sample is served, and the epoch report counts the bad ones.
    root = image_folder(num_classes=2, per_class={"train": 4})
    for i in range(70):
        (root / "train" / "c00" / f"bad_{i:02d}.JPEG").write_bytes(b"not an image")
    unreadable_report(log=False)
    got = batches(create_dataset(root, True, 2, image_size=8, num_classes=2, num_workers=1, seed=1, aug=PLAIN))
    assert len(got) == 78 // 2
    assert unreadable_report("train").count >= 70


def _png_header_only(path, width, height):
    """A valid all-black greyscale PNG of width x height, streamed (never held in memory)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer, row = zlib.compressobj(9), b"\0" * (width + 1)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_images_above_the_decode_bound_are_refused_unread(image_folder, caplog):
    root = image_folder(num_classes=1, per_class={"val": 1})
    big = root / "val" / "c00" / "huge.png"
    _png_header_only(big, 8200, 8200)  # 67.2 M pixels, just above 2**26; Pillow alone would decode it
    unreadable_report(log=False)
    with caplog.at_level(logging.WARNING, logger="snn_mlp"):
        got = batches(create_dataset(root, False, 2, image_size=8, num_classes=1, num_workers=1))
    assert np.concatenate([label for _, label in got]).tolist() == [-1, 0]  # huge.png sorts first
    assert any(str(big) in m and "decode bound" in m for m in caplog.messages)
    assert unreadable_report("val").paths == [str(big)]


_PEAK_MEMORY = """
import sys
sys.path.insert(0, sys.argv[1])
from src.dataset import create_dataset

def status(field):  # KiB
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])

for root in sys.argv[2:]:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident size (VmHWM) to the current one
    start = status("VmRSS")
    for _ in create_dataset(root, False, 1, image_size=32, num_classes=1, num_workers=1).create_tuple_iterator(
            num_epochs=1, output_numpy=True):
        pass
    print(status("VmHWM") - start)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs")
def test_eval_of_an_extreme_aspect_ratio_stays_small(image_folder):
    # 1 x 30000 pixels (a few KB): resizing its shorter side to 36 before cropping would allocate
    # 36 x 1,080,000 pixels (~155 MB); one resampling of the crop's source region needs next to nothing.
    normal = image_folder(num_classes=1, per_class={"val": 1}, size=(40, 40), ext=".png")
    tall = image_folder(num_classes=1, per_class={"val": 0})
    column = np.random.default_rng(0).integers(0, 256, (30000, 1, 3), dtype=np.uint8)
    Image.fromarray(column).save(tall / "val" / "c00" / "tall.png")
    result = subprocess.run([sys.executable, "-c", _PEAK_MEMORY, str(REPO_ROOT), str(normal), str(tall)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    normal_kib, tall_kib = map(int, result.stdout.split()[-2:])
    assert (tall_kib - normal_kib) / 1024 < 40, f"peak memory {normal_kib} KiB for a 40x40 image, {tall_kib} KiB " \
                                               f"for one of 1 x 30000"


def test_symlink_cycles_and_second_paths_are_listed_once(image_folder, caplog):
    root = image_folder(num_classes=2, per_class={"val": 3}, ext=".png")
    (root / "val" / "c00" / "loop").symlink_to(".")  # val/c00/loop -> val/c00: followed forever before
    (root / "val" / "c01" / "alias.png").symlink_to(root / "val" / "c00" / "img_000.png")  # one file, two labels
    (root / "val" / "c01" / "same").symlink_to(root / "val" / "c01")
    with caplog.at_level(logging.WARNING, logger="snn_mlp"):
        assert count_images(root, "val") == 6
    assert any("3 paths under" in m and "symlink cycles" in m for m in caplog.messages)
    got = batches(create_dataset(root, False, 6, image_size=8, num_classes=2, num_workers=1))
    assert np.concatenate([label for _, label in got]).tolist() == [0, 0, 0, 1, 1, 1]


def test_empty_class_folders_refused_in_train_warned_in_val(image_folder, caplog):
    root = image_folder(num_classes=3, per_class={"train": [2, 0, 2], "val": [1, 0, 1]})
    with pytest.raises(ValueError, match=r"1 class folder\(s\) of .*train hold no image: c01"):
        create_dataset(root, True, 2, image_size=8, num_classes=3, num_workers=1)
    with caplog.at_level(logging.WARNING, logger="snn_mlp"):
        create_dataset(root, False, 2, image_size=8, num_classes=3, num_workers=1)
    assert any("hold no image: c01" in m and "not evaluated" in m for m in caplog.messages)


# ----------------------------------------------------------------------------------- errors and helpers

def test_layout_errors_name_the_path(tmp_path, image_folder):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nope")) + ".*expected <root>/train"):
        create_dataset(tmp_path / "nope", True, 2)
    root = image_folder(per_class={"train": 2})
    with pytest.raises(ValueError, match=re.escape(str(root / "val")) + " is missing"):
        create_dataset(root, False, 2, num_classes=3)
    (root / "val").mkdir()
    with pytest.raises(ValueError, match="no class folders in " + re.escape(str(root / "val"))):
        create_dataset(root, False, 2, num_classes=3)
    (root / "val" / "c00").mkdir()
    (root / "val" / "c00" / "README.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no images"):
        count_images(root, "val")


def test_argument_errors(image_folder):
    root = image_folder(num_classes=3, per_class={"train": 2, "val": 1})
    make = lambda **kw: create_dataset(root, True, **dict(dict(batch_size=2, image_size=8, num_classes=3,
                                                               num_workers=1), **kw))
    with pytest.raises(ValueError, match="'mixpu'"):
        make(aug={"mixpu": 0.5})
    with pytest.raises(ValueError, match="reprob"):
        make(aug={"reprob": 2})
    with pytest.raises(ValueError, match="interpolation"):
        make(aug={"interpolation": "cubic"})
    with pytest.raises(ValueError, match="auto_augment"):
        make(aug={"auto_augment": "original"})
    with pytest.raises(ValueError, match="3 class folders but num_classes is 1000"):
        make(num_classes=1000)
    with pytest.raises(ValueError, match="rank_id"):
        make(rank_id=2, rank_size=2)
    with pytest.raises(ValueError, match="cannot fill one batch of 7"):
        make(batch_size=7)
    with pytest.raises(ValueError, match="split"):
        unreadable_report("test")
    (root / "val" / "c99").mkdir()
    with pytest.raises(ValueError, match="differ"):
        make()


def test_counts_and_classes(image_folder):
    root = image_folder(num_classes=3, per_class={"train": [2, 3, 4], "val": 1})
    (root / "train" / "c00" / "notes.txt").write_text("ignored: no image extension")
    (root / "train" / ".hidden").mkdir()
    assert count_images(root, "train") == 9 and count_images(root, "val") == 3
    assert get_num_classes(root) == 3
    with pytest.raises(ValueError, match="split"):
        count_images(root, "test")


# ----------------------------------------------------------------------------- the pipeline on the digits

def test_digits_pipeline_end_to_end(default_data):
    digits_aug = dict(PLAIN, scale_min=0.5, label_smoothing=0.1, crop_pct=1.0)
    image, label = first_batch(create_dataset(default_data, True, 16, image_size=32, num_classes=10,
                                              num_workers=1, aug=digits_aug))
    assert image.shape == (16, 3, 32, 32) and label.shape == (16, 10)
    got = batches(create_dataset(default_data, False, 64, image_size=32, num_classes=10, num_workers=1,
                                 aug=digits_aug))
    assert sum(len(labels) for _, labels in got) == 360
