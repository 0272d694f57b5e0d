"""Data readers and the synthetic walkway generator (numpy and OpenCV only, no torch).

Every reader returns :class:`Clip` objects; errors are :class:`DatasetError` with one line that
names the file and the problem.
"""
from .common import Clip, DatasetError
from .mnist import load_mnist, read_idx
from .ucsd import find_ucsd_root, load_ucsd, read_frame_ranges
from .video import read_image_folder, read_video
from .walkway import WalkwayConfig, generate_walkway, write_ucsd_layout

__all__ = [
    "Clip",
    "DatasetError",
    "find_ucsd_root",
    "generate_walkway",
    "load_mnist",
    "load_ucsd",
    "read_frame_ranges",
    "read_idx",
    "read_image_folder",
    "read_video",
    "WalkwayConfig",
    "write_ucsd_layout",
]
