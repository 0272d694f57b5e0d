"""GPU runtime pieces: CUDA preprocessing kernels compiled with NVRTC, cuda-python helpers.

Nothing here imports torch; everything here needs cuda-python (``occ[gpu]``) and, to run, an
NVIDIA GPU. Kernels are ``.cu`` files in ``kernels/`` (one operation each), compiled at first
use and cached per GPU architecture.
"""
