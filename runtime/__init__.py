"""The lean runtime: what a camera box installs. numpy, OpenCV, ONNX Runtime (or TensorRT) and
cuda-python; never torch, data sets or evaluation protocols.

Where a frame goes, by folder: ``sources`` (camera, file, stream) → ``preprocess`` (the numpy
reference, or CUDA kernels) → ``backends`` (ONNX Runtime, TensorRT, Triton) → ``scoring``
(score, decision, mask: the manifest's rule) → ``events`` (episodes, snapshots, metrics).
``detector`` puts the middle three together for one stream; ``service`` runs the whole path;
``manifest`` is what travels with every model.
"""
