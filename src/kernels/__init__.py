"""The machinery shared by the aot kernels of ``src/lif`` and ``src/fast_ops``; importable without MindSpore.

* ``build.py``: the recipe of every library, compiling and caching it (``python src/kernels/build.py NAME``);
* ``custom_op.py``: ``ops.Custom`` registration helpers and the log-once of back-end choices (imports MindSpore
  when called);
* ``standalone.py``: a kernel library called through ctypes, outside MindSpore (timings, GPU checks);
* ``export_mode.py``: ``exporting()``, the one switch that makes both clients build MindSpore-only Cells;
* ``include/``: headers the kernels share (``aot_extra.h``: MindSpore's attribute ABI; ``cpu_parallel.h``: the
  CPU kernels' thread pool and float bit helpers).
"""
