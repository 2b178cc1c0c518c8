"""Batch-wise Mixup / CutMix with label smoothing (timm's 'batch' mode), in place on a float32 NCHW batch.
"""
import math

import numpy as np

from .seeding import STREAM_MIX

__all__ = ["MixupCutmix"]


class MixupCutmix:
    """timm Mixup in 'batch' mode: one lambda per batch, pairs each sample with the reversed batch.

    Produces soft targets ``lam * smooth(y) + (1 - lam) * smooth(y reversed)`` where ``smooth`` puts
    ``1 - smoothing + smoothing / C`` on the class and ``smoothing / C`` elsewhere. For CutMix, ``lam`` is
    corrected to the exact area kept.
    """

    def __init__(self, num_classes, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0,
                 smoothing=0.1, seed=0):
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.switch_prob, self.prob, self.smoothing, self.seed = switch_prob, prob, smoothing, seed

    def soft_targets(self, labels, lam):
        off = self.smoothing / self.num_classes
        smooth = np.full((len(labels), self.num_classes), off, np.float32)
        smooth[np.arange(len(labels)), labels] = 1.0 - self.smoothing + off
        return (lam * smooth + (1.0 - lam) * smooth[::-1]).astype(np.float32)

    def draw(self, rng, height, width):
        """-> (lam, box or None); box = (top, bottom, left, right) pasted from the reversed batch."""
        if not (self.mixup_alpha > 0 or self.cutmix_alpha > 0) or rng.random() >= self.prob:
            return 1.0, None
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.random() < self.switch_prob)
        lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha) if use_cutmix
                    else rng.beta(self.mixup_alpha, self.mixup_alpha))
        if not use_cutmix:
            return lam, None
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
        left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
        lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
        return lam, (int(top), int(bottom), int(left), int(right))

    def mix(self, x, labels, first_key):
        """Mix the float32 NCHW batch ``x`` in place; -> soft targets. Random draws come from the batch's first
        key, so the result does not depend on which worker built the batch."""
        rng = np.random.default_rng([self.seed, STREAM_MIX, int(first_key)])
        lam, box = self.draw(rng, x.shape[2], x.shape[3])
        if box is not None:
            top, bottom, left, right = box
            x[:, :, top:bottom, left:right] = x[::-1, :, top:bottom, left:right].copy()
        elif lam < 1.0:
            # Sample i and its partner n-1-i become lam * self + (1 - lam) * partner (timm's batch mode), with
            # half a batch of scratch instead of batch-sized temporaries; the same float32 operations, so the
            # same bits as the out-of-place formula.
            pairs = len(x) // 2
            head, tail = x[:pairs], x[::-1][:pairs]
            tail_partner = head * np.float32(1.0 - lam)
            head *= np.float32(lam)
            head += tail * np.float32(1.0 - lam)
            tail *= np.float32(lam)
            tail += tail_partner
            if len(x) % 2:  # the middle sample of an odd batch is its own partner
                middle = x[pairs]
                x[pairs] = middle * np.float32(lam) + middle * np.float32(1.0 - lam)
        return self.soft_targets(np.asarray(labels, np.int64), lam)
