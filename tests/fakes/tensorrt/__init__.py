"""A recording fake of the ``tensorrt`` Python module, for tests only (tests/test_tensorrt_fake.py puts
tests/fakes on ``sys.path``; nothing in occ can import it otherwise).

It implements only the documented signatures occ calls, each with the TensorRT version its behaviour
comes from, records every call in :data:`calls`, and checks calls, never results: a "plan" is JSON
describing the parsed network's I/O, never an executable engine. What the fake cannot tell (kernels,
numerics, the real inspector text) the real parity tests and benchmarks/tensorrt_check.py check on a
machine with TensorRT.

Sources: TensorRT 10.x Python API reference (Builder, IBuilderConfig, Runtime, ICudaEngine,
IExecutionContext, EngineInspector, nptype), TensorRT 10 developer guide ("Version Compatibility",
"Working with DLA"), TensorRT 11.x "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x".
"""
from __future__ import annotations

import enum
import json
from types import SimpleNamespace

import numpy as np

__version__ = "10.3.0.30"
calls: list[tuple] = []
settings = SimpleNamespace(dla_cores=0, build_fails=False, dla_layers=())


def configure(version: str = "10.3.0.30", dla_cores: int = 0, build_fails: bool = False) -> None:
    """Test hook (not TensorRT's): the version to pose as, the builder's DLA count; clears :data:`calls`."""
    global __version__
    __version__ = version
    settings.dla_cores, settings.build_fails = dla_cores, build_fails
    calls.clear()


def _major() -> int:
    return int(__version__.split(".")[0])


def _record(*call) -> None:
    calls.append(call)


class Logger:  # TensorRT 10: tensorrt.Logger(min_severity)
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity: int = 2):
        self.min_severity = min_severity


class DataType(enum.Enum):  # TensorRT 10 DataType (BF16 since 9.0, FP8 since 8.6, INT4 since 10.0)
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9


float32, float16, int8, int32, bool, uint8, fp8, bfloat16, int64, int4 = (DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32,
                                                                          DataType.BOOL, DataType.UINT8, DataType.FP8, DataType.BF16,
                                                                          DataType.INT64, DataType.INT4)
_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
          DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}


def nptype(trt_type: DataType):
    """TensorRT 10 ``tensorrt.nptype``: the numpy type, TypeError where numpy has none (BF16, FP8, INT4)."""
    if trt_type not in _NUMPY:
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return _NUMPY[trt_type]


class TensorIOMode(enum.Enum):  # TensorRT 8.5+
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.Enum):  # TensorRT 8.4+
    WORKSPACE = 0


class ProfilingVerbosity(enum.Enum):  # TensorRT 8.2+
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


class LayerType(enum.Enum):
    CONVOLUTION = 0
    ACTIVATION = 1
    POOLING = 2
    SCALE = 3
    ELEMENTWISE = 4
    CONCATENATION = 5
    DECONVOLUTION = 6
    REDUCE = 7
    UNARY = 8
    SHUFFLE = 9
    NORMALIZATION = 10
    CAST = 11
    CONSTANT = 12
    OTHER = 13


class ActivationType(enum.Enum):
    RELU = 0
    SIGMOID = 1
    TANH = 2
    LEAKY_RELU = 3


def _builder_flags():
    # TensorRT 10: FP16, INT8 and OBEY_PRECISION_CONSTRAINTS exist. TensorRT 11 builds strongly typed
    # networks only, FP16 coming from the tensor types (TensorRT 11.4 docs, "Building and Launching the
    # Loadable"); that OBEY_PRECISION_CONSTRAINTS went with FP16 and INT8 is this fake's assumption
    names = ["VERSION_COMPATIBLE", "GPU_FALLBACK"] + (["FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"] if _major() < 11 else [])
    return enum.Enum("BuilderFlag", names)


class _FlagNamespace:
    def __getattr__(self, name):
        try:
            return _builder_flags()[name]
        except KeyError:
            raise AttributeError(f"type object 'tensorrt.BuilderFlag' has no attribute '{name}'") from None


BuilderFlag = _FlagNamespace()


class NetworkDefinitionCreationFlag(enum.IntEnum):  # TensorRT 10: STRONGLY_TYPED = 1 (EXPLICIT_BATCH is deprecated and ignored)
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


_ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL, 7: DataType.INT64}
_LAYER_TYPES = {"Conv": LayerType.CONVOLUTION, "ConvTranspose": LayerType.DECONVOLUTION, "MaxPool": LayerType.POOLING,
                "AveragePool": LayerType.POOLING, "Concat": LayerType.CONCATENATION, "Relu": LayerType.ACTIVATION,
                "LeakyRelu": LayerType.ACTIVATION, "Tanh": LayerType.ACTIVATION, "Sigmoid": LayerType.ACTIVATION,
                "BatchNormalization": LayerType.SCALE, "ReduceMean": LayerType.REDUCE, "ReduceMax": LayerType.REDUCE,
                "Cast": LayerType.CAST, "Reshape": LayerType.SHUFFLE, "Flatten": LayerType.SHUFFLE}
_ACTIVATIONS = {"Relu": ActivationType.RELU, "LeakyRelu": ActivationType.LEAKY_RELU, "Tanh": ActivationType.TANH,
                "Sigmoid": ActivationType.SIGMOID}


class ITensor:
    def __init__(self, name: str, shape: tuple, dtype: DataType):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype


class ILayer:
    def __init__(self, name: str, kind: LayerType, outputs: list[ITensor], activation: ActivationType | None = None):
        self.name, self._type, self._outputs, self._activation = name, kind, outputs, activation
        self.precision = DataType.FLOAT

    @property
    def type(self):
        return self._type

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def set_output_type(self, index: int, dtype: DataType) -> None:
        _record("set_output_type", self.name, index, dtype)


class IActivationLayer(ILayer):  # its ``type`` is the ActivationType (TensorRT 10 IActivationLayer.type)
    @property
    def type(self):
        return self._activation


class INetworkDefinition:
    def __init__(self, flags: int):
        self.flags, self._inputs, self._outputs, self._layers = flags, [], [], []

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]


class OnnxParser:
    """TensorRT 10 ``OnnxParser(network, logger)``: ``parse(model: bytes) -> bool``; the fake reads the
    ONNX graph's inputs, outputs and nodes into the network. A graph input that also has an
    initializer becomes a constant, not a network input, as TensorRT's ONNX parser treats it."""

    def __init__(self, network: INetworkDefinition, logger: Logger):
        self.network, self._errors = network, []

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        graph = onnx.ModelProto.FromString(model).graph
        defaults = {init.name for init in graph.initializer}

        def tensor(value):
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
            return ITensor(value.name, dims, _ONNX_TYPES[value.type.tensor_type.elem_type])

        self.network._inputs = [tensor(v) for v in graph.input if v.name not in defaults]
        self.network._outputs = [tensor(v) for v in graph.output]
        for node in graph.node:
            kind = _LAYER_TYPES.get(node.op_type, LayerType.ELEMENTWISE if node.op_type in ("Add", "Sub", "Mul", "Div", "Greater",
                                                                                            "Less", "GreaterOrEqual") else LayerType.OTHER)
            outputs = [ITensor(name, (), DataType.BOOL if node.op_type.startswith(("Greater", "Less", "Equal")) else DataType.FLOAT)
                       for name in node.output]
            self.network._layers.append(ILayer(node.name or node.op_type, kind, outputs, _ACTIVATIONS.get(node.op_type)))
        _record("parse", [t.name for t in self.network._inputs])
        return True

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int):
        return self._errors[index]


class IOptimizationProfile:
    def __init__(self):
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min, opt, max) -> None:  # TensorRT 10: set_shape(input, min, opt, max)
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))
        _record("set_shape", input, self.shapes[input])


class ITimingCache:
    def __init__(self, data: bytes):
        self.data = bytes(data)

    def serialize(self):
        return self.data or b"fake-timing-cache"


class IBuilderConfig:
    def __init__(self):
        self.flags_set: list = []
        self.profiles: list[IOptimizationProfile] = []
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self._cache = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        _record("set_memory_pool_limit", pool, pool_size)

    def set_flag(self, flag) -> None:
        self.flags_set.append(flag.name)
        _record("set_flag", flag.name)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache:
        return self._cache

    def can_run_on_DLA(self, layer: ILayer) -> bool:  # TensorRT 10 IBuilderConfig.can_run_on_DLA(layer)
        return layer.type in (LayerType.CONVOLUTION, LayerType.DECONVOLUTION, LayerType.POOLING, LayerType.SCALE, LayerType.ACTIVATION)


class Builder:
    def __init__(self, logger: Logger):
        self.logger = logger

    @property
    def num_DLA_cores(self) -> int:  # TensorRT 10 IBuilder.num_DLA_cores
        return settings.dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        _record("create_network", flags)
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
        """TensorRT 10: the plan (IHostMemory, buffer protocol) or None when the build fails."""
        _record("build_serialized_network", sorted(config.flags_set))
        if settings.build_fails:
            return None
        profile = config.profiles[0].shapes if config.profiles else {}
        io = [_io(t, "input", profile.get(t.name)) for t in network._inputs] + [_io(t, "output") for t in network._outputs]
        return make_plan(io, version_compatible="VERSION_COMPATIBLE" in config.flags_set,
                         layers=[layer.name for layer in network._layers])


def _io(tensor: ITensor, mode: str, profile=None) -> dict:
    return {"name": tensor.name, "mode": mode, "dtype": tensor.dtype.name, "shape": list(tensor.shape), "profile": profile}


def make_plan(io: list[dict], version: str | None = None, version_compatible: bool = False, layers: list[str] = ()) -> bytes:
    """Test hook (not TensorRT's): a plan as another tool (trtexec) would have built it. ``io``:
    ``{"name", "mode": input|output, "dtype": DataType name, "shape": [-1 for dynamic], "profile": [min, opt, max]}``."""
    return json.dumps({"fake_plan": True, "version": version or __version__, "version_compatible": version_compatible,
                       "io": io, "layers": list(layers)}).encode()


class Runtime:
    """TensorRT 10 ``Runtime(logger)``. ``engine_host_code_allowed`` (TensorRT 8.6+) defaults to False;
    a version-compatible plan embeds the lean runtime and does not deserialize without it (TensorRT 10
    developer guide, "Version Compatibility"). ``deserialize_cuda_engine`` returns None on failure."""

    def __init__(self, logger: Logger):
        self.engine_host_code_allowed = False
        self.DLA_core = -1

    def deserialize_cuda_engine(self, serialized_engine):
        _record("deserialize_cuda_engine", self.engine_host_code_allowed, self.DLA_core)
        try:
            plan = json.loads(bytes(serialized_engine))
        except ValueError:
            return None
        if not plan.get("fake_plan"):
            return None
        if plan["version_compatible"]:
            if not self.engine_host_code_allowed:
                return None
        elif plan["version"] != __version__:
            return None
        return ICudaEngine(plan)


class ICudaEngine:
    def __init__(self, plan: dict):
        self._io = {t["name"]: t for t in plan["io"]}
        self._order = [t["name"] for t in plan["io"]]
        self._layers = plan["layers"]

    @property
    def num_io_tensors(self) -> int:
        return len(self._order)

    def get_tensor_name(self, index: int) -> str:
        return self._order[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        tensor = self._io.get(name)
        return TensorIOMode.NONE if tensor is None else TensorIOMode.INPUT if tensor["mode"] == "input" else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple:
        return tuple(self._io[name]["shape"])

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self._io[name]["dtype"]]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        return [tuple(shape) for shape in self._io[name]["profile"]]

    def create_execution_context(self) -> "IExecutionContext":
        return IExecutionContext(self)

    def create_engine_inspector(self) -> "EngineInspector":
        return EngineInspector(self)


class IExecutionContext:
    """TensorRT 10: ``set_input_shape(name, shape) -> bool`` is False (it does not raise) for a name that
    is not an input or a shape outside the profile; ``set_tensor_address(name, memory) -> bool``;
    ``execute_async_v3(stream_handle) -> bool``."""

    def __init__(self, engine: ICudaEngine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name: str, shape) -> bool:
        _record("set_input_shape", name, tuple(shape))
        tensor = self.engine._io.get(name)
        if tensor is None or tensor["mode"] != "input" or len(shape) != len(tensor["shape"]):
            return False
        if tensor["profile"]:
            low, _, high = tensor["profile"]
            if any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
                return False
        elif tuple(shape) != tuple(tensor["shape"]):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        shape = list(self.engine._io[name]["shape"])
        if self.engine._io[name]["mode"] == "input":
            return self.shapes.get(name, tuple(shape))
        batches = [s[0] for n, s in self.shapes.items() if -1 in self.engine._io[n]["shape"]]
        return tuple(batches[0] if d == -1 and batches else d for d in shape)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        _record("set_tensor_address", name, memory)
        if name not in self.engine._io or not isinstance(memory, int):
            return False
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        _record("execute_async_v3", stream_handle)
        if not isinstance(stream_handle, int):
            raise TypeError("execute_async_v3(): incompatible function arguments (stream_handle: int)")
        return set(self.addresses) >= set(self.engine._io)


class EngineInspector:
    """``get_engine_information(LayerInformationFormat.JSON)``: TensorRT 10 gives each layer output one
    ``Format/Datatype`` string; TensorRT 11 splits it (TensorRT 10.x → 11.x IEngineInspector migration
    guide; the split key names here follow its I/O Tensors entries, ``Format`` and ``DataType``)."""

    def __init__(self, engine: ICudaEngine):
        self.engine = engine

    def get_engine_information(self, format: LayerInformationFormat) -> str:
        if _major() < 11:
            outputs = [{"Name": "out", "Format/Datatype": "Row major linear FP32"}]
        else:
            outputs = [{"Name": "out", "Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"}]
        return json.dumps({"Layers": [{"Name": name, "LayerType": "Fake", "Outputs": outputs} for name in self.engine._layers]})
