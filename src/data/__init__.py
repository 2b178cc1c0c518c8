"""The parts of the ImageFolder pipeline that ``src/dataset.py`` (``create_dataset``) puts together: ``layout``
(folders, file lists), ``unreadable`` (bad files and their record), ``aug`` (the recipe's defaults and their
checks), ``rand_augment``, ``pil_kernels`` (RandAugment's geometric ops and the crop resize in C++, Pillow's
bytes), ``transforms`` (per image and per batch), ``mixup``, ``sampler`` (shards and epochs) and ``seeding``
(the random streams). Nothing is imported here, so ``src.config`` can read ``aug`` alone."""
