"""Graph outputs → score, decision, mask (:func:`decide`), and the thresholds those rules need from
normal data (``thresholds``). Pure functions over numpy arrays; the rule is the manifest's."""
from .decide import FrameResult, alocc_fires, alocc_patch_map, avid_fires, decide, frame_threshold, mask_boxes, on_frame, scoring_outputs
from .statistics import alocc_frame_scores, location_stats, normalize_by_location, patch_scores
from .thresholds import (LOG_MULTIPLE_CAP, alocc_thresholds, avid_thresholds, block_peaks, block_values, check_rate, frame_evidence,
                         frame_peak, frame_scores, quantile_threshold, sample_size_warning, solve_for_false_alarms,
                         threshold_warnings)

__all__ = ["FrameResult", "LOG_MULTIPLE_CAP", "alocc_fires", "alocc_frame_scores", "alocc_patch_map", "alocc_thresholds", "avid_fires", "frame_threshold",
           "avid_thresholds", "block_peaks", "block_values", "check_rate", "decide", "frame_evidence", "frame_peak", "frame_scores", "location_stats",
           "mask_boxes", "normalize_by_location", "on_frame", "patch_scores", "quantile_threshold", "sample_size_warning",
           "scoring_outputs", "solve_for_false_alarms", "threshold_warnings"]
