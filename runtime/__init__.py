"""The lean runtime: what runs on the camera box. numpy, OpenCV and ONNX Runtime; never torch.

Where a frame goes, in folder order: ``sources`` (camera, file, stream) → ``preprocess``
(the numpy reference) → ``backends`` (ONNX Runtime, TensorRT) → ``detector`` (scores, masks,
decisions) → ``events`` (episodes, snapshots, metrics).
"""
