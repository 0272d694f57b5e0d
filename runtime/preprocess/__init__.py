"""Frames → network input: the numpy reference (``reference``) and its CUDA form (``gpu``, kernels in
``kernels/``), which the tests hold to the reference."""
from .reference import (AVID_OFFSETS, FrameError, FramePreprocessor, PatchGrid, avid_triplet, averaged_frames, normalize,
                        normalized_averages, nv12_to_gray, preprocess_clip, resize_frame, stack_clip, to_gray)

__all__ = ["AVID_OFFSETS", "FrameError", "FramePreprocessor", "PatchGrid", "avid_triplet", "averaged_frames", "normalize",
           "normalized_averages", "nv12_to_gray", "preprocess_clip", "resize_frame", "stack_clip", "to_gray"]
