"""Export: checkpoint → verified ONNX graph with the manifest embedded."""
