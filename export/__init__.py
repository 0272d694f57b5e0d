"""Trained model → deployable artifacts: verified ONNX (``onnx_export``, needs torch), FP16 ONNX
(``fp16``), TensorRT engines (``engine``), Triton and DeepStream configurations; ``workflow`` is
what ``occ-export`` runs. Only ``onnx_export`` imports torch."""
