"""The samplers: this rank's shard of an epoch as keys ``epoch * num_images + index``, and its batches of them.
"""
import numpy as np

import mindspore.dataset as ds

from .seeding import STREAM_SHUFFLE

__all__ = ["EpochKeySampler", "EpochBatchSampler"]


class EpochKeySampler(ds.Sampler):
    """Yields ``epoch * num_images + index`` for this rank's shard, one epoch per ``__iter__``.

    Training: a permutation seeded by (seed, epoch) shared by all ranks, cut to a multiple of the rank
    count so every rank gets as many images (ranks stay in step); rank r takes every rank_size-th entry,
    so shards are disjoint and cover the epoch. Evaluation: the file order, strided the same way.
    MindSpore copies the sampler into each iterator, so every new iterator starts again at epoch 0.
    """

    def __init__(self, num_images, rank_id, rank_size, shuffle, seed):
        self.num_images, self.rank_id, self.rank_size = num_images, rank_id, rank_size
        self.shuffle, self.seed, self._epoch = shuffle, seed, 0
        super().__init__()  # reads len(self)

    def shard(self, epoch):
        if self.shuffle:
            order = np.random.default_rng([self.seed, STREAM_SHUFFLE, epoch]).permutation(self.num_images)
            order = order[:self.num_images - self.num_images % self.rank_size]
        else:
            order = np.arange(self.num_images)
        return order[self.rank_id::self.rank_size]

    def __iter__(self):
        epoch, self._epoch = self._epoch, self._epoch + 1
        return iter((epoch * self.num_images + self.shard(epoch)).tolist())

    def __len__(self):
        if self.shuffle:
            return self.num_images // self.rank_size
        return len(range(self.rank_id, self.num_images, self.rank_size))


class EpochBatchSampler(ds.Sampler):
    """Yields batch ids ``epoch * batches_per_epoch + b``, one epoch per ``__iter__``; ``keys(batch_id)`` are that
    batch's keys: consecutive runs of ``batch_size`` of ``EpochKeySampler``'s (the last run shorter unless
    ``drop_remainder``), so batches are those of batching the key sampler's samples in order."""

    def __init__(self, keys, batch_size, drop_remainder):
        self.key_sampler, self.batch_size, self.drop_remainder = keys, batch_size, drop_remainder
        self._epoch, self._shard = 0, (None, None)
        super().__init__()  # reads len(self)

    def keys(self, batch_id):
        epoch, batch = divmod(int(batch_id), len(self))
        if self._shard[0] != epoch:  # cached: an epoch's permutation is drawn once, not per batch
            self._shard = (epoch, epoch * self.key_sampler.num_images + self.key_sampler.shard(epoch))
        return self._shard[1][batch * self.batch_size:(batch + 1) * self.batch_size].tolist()

    def __iter__(self):
        epoch, self._epoch = self._epoch, self._epoch + 1
        return iter(range(epoch * len(self), (epoch + 1) * len(self)))

    def __len__(self):
        samples = len(self.key_sampler)
        return samples // self.batch_size if self.drop_remainder else -(-samples // self.batch_size)
