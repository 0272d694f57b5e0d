"""The model manifest: every setting a deployed model needs, in one versioned JSON document.

It travels with the model from training to the camera: inside the checkpoint, in the ONNX file's
``metadata_props`` under :data:`METADATA_KEY`, beside every engine as ``<name>.engine.json`` and
in a Triton model's configuration. :func:`read_manifest` finds it in any of them. The runtime
refuses a model whose manifest is missing, invalid, or from a newer major schema, in one line.

The ``scoring`` part is the scoring contract: exactly how the graph's outputs become a frame score,
a decision and a mask (:class:`AloccScoring`, :class:`AvidScoring`). The graph builders compose
the exported graph from it, and :func:`occ.runtime.scoring.decide` applies it.
"""
from .artifacts import engine_sidecar, load_manifest_file, read_manifest, write_manifest
from .errors import ManifestError
from .onnx_io import manifest_from_metadata
from .schema import (COLORS, EPISODE_RULES, FRAME_SCORES, GATES, INTERPOLATIONS, METADATA_KEY, METHODS, PRECISIONS, REGION_SCORERS,
                     RESIDUALS, SCHEMA_VERSION, SCORING_SPECS, TEMPORAL_CHANNELS, TEMPORAL_MEANINGS, TEMPORAL_RULES, THRESHOLD_NAMES,
                     AlarmRate, AloccScoring, AvidScoring, DriftView, EpisodeRule, InputSpec, LocationStats, Manifest, PatchSpec, RegionSpec,
                     SceneView, Threshold)
from .typed import _build  # noqa: F401 - occ.evaluation.report builds its typed report with it

__all__ = ["AlarmRate", "AloccScoring", "AvidScoring", "COLORS", "DriftView", "EPISODE_RULES", "EpisodeRule", "FRAME_SCORES", "GATES", "INTERPOLATIONS",
           "InputSpec", "LocationStats", "METADATA_KEY", "METHODS", "Manifest", "ManifestError", "PRECISIONS", "PatchSpec", "REGION_SCORERS",
           "RESIDUALS", "RegionSpec", "SCHEMA_VERSION", "SCORING_SPECS", "SceneView", "TEMPORAL_CHANNELS", "TEMPORAL_MEANINGS",
           "TEMPORAL_RULES", "THRESHOLD_NAMES", "Threshold", "engine_sidecar", "load_manifest_file", "manifest_from_metadata",
           "read_manifest", "write_manifest"]
