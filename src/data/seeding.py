"""How the pipeline's randomness is seeded: every random choice for a sample comes from a generator seeded
by ``(seed, stream, key)``, ``key`` being the sampler's ``epoch * num_images + index``, and mixup's from
``(seed, stream, first key of the batch)``; so a batch depends on the seed alone, not on worker count or
scheduling.
"""
__all__ = ["STREAM_SHUFFLE", "STREAM_SAMPLE", "STREAM_ERASE", "STREAM_MIX"]

# Independent random streams per purpose, so turning one effect off does not shift another's draws.
STREAM_SHUFFLE, STREAM_SAMPLE, STREAM_ERASE, STREAM_MIX = range(4)
