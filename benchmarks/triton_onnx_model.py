"""A Triton Python-backend model that runs the repository's ``1/model.onnx`` with ONNX Runtime CPU.

Copied as ``<model>/1/model.py`` by :func:`occ.benchmarks.triton_server.python_backend_repository`
and imported only by Triton's Python backend stub (``triton_python_backend_utils`` exists there
alone). It stands in for Triton's ONNX Runtime backend, which the PyTriton wheel does not ship:
the graph, the tensor names and the configuration are the ones ``occ-export --triton`` wrote.

The dynamic batcher hands ``execute`` several requests at once; they run as one ONNX Runtime
batch (rows concatenated along the batch axis) and the outputs are split back per request, as
Triton's own backends do.
"""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# ONNX Runtime's intra-op threads per instance, set in the server's environment (unset: ONNX Runtime's default)
THREADS_ENV = "OCC_ORT_THREADS"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        threads = int(os.environ.get(THREADS_ENV) or 0)
        if threads > 0:  # otherwise ONNX Runtime's default, as the local runtime's ort-cpu backend
            options.intra_op_num_threads = threads
        self.inference = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests):
        feeds = [{name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
                 for request in requests]
        rows = [len(feed[self.input_names[0]]) for feed in feeds]
        batch = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.input_names}
        try:
            values = self.inference.run(self.output_names, batch)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            error = pb_utils.TritonError(f"ONNX Runtime: {str(exc).splitlines()[0][:300]}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for request, count in zip(requests, rows):
            wanted = request.requested_output_names() or self.output_names
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value[start : start + count]))
                       for name, value in zip(self.output_names, values) if name in wanted]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += count
        return responses

    def finalize(self):
        self.inference = None
