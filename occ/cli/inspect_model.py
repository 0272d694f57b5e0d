"""``occ inspect MODEL``: a model at a glance; ``occ inspect cameras/``: which cameras need ``occ calibrate``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import JsonOption, QuietOption, console, err_console, fail, one_line_errors, report, table


def inspect(
    model: Annotated[Path, typer.Argument(help="An exported model (.onnx), an engine (.engine, with its .engine.json beside it), a "
                                               "Triton model folder, or a checkpoint (.pt; needs torch). Or the service's camera "
                                               "state: the cameras/ folder beside its events log, one camera's cameras/NAME.json, "
                                               "or the events log itself.")],
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Show a model's method, recipe, input geometry, temporal rule, thresholds with their provenance
    and history, scoring, precision and SHA-256, and which backends can run it on this machine. Given
    the service's camera state instead: each camera, whether it needs occ calibrate, why and since when."""
    from occ.runtime.events.camera_state import CameraStateError, is_camera_state_path, read_camera_states
    from occ.runtime.model_info import model_info

    if is_camera_state_path(model):
        with one_line_errors(CameraStateError):
            cameras = read_camera_states(model)
        report({"path": str(model), "cameras": cameras}, json_path, quiet, _show_cameras)
        return

    manifest = _checkpoint_manifest(model) if model.suffix == ".pt" else None
    with one_line_errors():
        info = model_info(model, manifest)
    report(info, json_path, quiet, _show)


def _checkpoint_manifest(path: Path) -> Any:
    try:
        from occ.train.common import CheckpointError, load_checkpoint
    except ImportError:
        fail(f"{path}: reading a checkpoint needs torch: pip install 'occ[train]'")
    with one_line_errors(CheckpointError):
        return load_checkpoint(path).manifest


def expected_alarms_text(threshold: dict[str, Any]) -> str:
    """A threshold's expected alarms per hour on its calibration footage, with the 95 % interval,
    the footage's length and the budget it was solved for."""
    rate = threshold.get("expected_alarms")
    if not rate:
        return ""
    budget = threshold.get("alarms_per_day_budget")
    return (f"{rate['per_hour']:.3g} ({rate['per_hour_low']:.3g}-{rate['per_hour_high']:.3g}; {rate['alarms']} in "
            f"{rate['hours'] * 60:.1f} min{f'; budget {budget:g}/day' if budget else ''})")


def _scene(scene: dict[str, Any] | None) -> str:
    if scene is None:
        return "(none: the service learns it from each stream's first minute; occ calibrate stores one)"
    wander = scene.get("fine_wander")
    shown = "" if wander is None else f"; its sub-pixel wander {wander[0]:.2%} x, {wander[1]:.2%} y of the frame"
    return f"{scene['width']}x{scene['height']}, mean of {scene['frames']} frames of {scene['data'] or '?'}, {scene['date']}{shown}"


def _drift(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return "(none: the service learns it from each stream's first 20 minutes; occ calibrate stores one)"
    return (f"{drift['light_bins']} light bins of {drift['frames']} frames of {drift['data'] or '?'}, spread {drift['spread']:.3g}, "
            f"{drift['date']}")


def _show(info: dict[str, Any]) -> None:
    spec = info["input"]
    rows = [
        ("method", info["method"]), ("recipe", info["recipe"] or "(not recorded)"),
        ("artifact", f"{info['artifact']}, {info['bytes']:,} bytes"), ("sha256", info["sha256"]),
        ("made by", f"occ {info['occ_version'] or '?'} (manifest schema {info['schema_version']})"),
        ("input", f"{spec['height']}x{spec['width']}, {spec['channels']} channel(s), {spec['color']}, {spec['interpolation']} resize, "
                  f"{spec['normalization']}"),
        ("temporal rule", f"{info['temporal_rule']['name']}: {info['temporal_rule']['stacks']}"),
        ("precision", info["precision"]), ("decision", info["decision"]),
        ("scoring", ", ".join(f"{k}={v}" for k, v in info["scoring"].items())),
        ("episode rule", info["episodes"]["described"]),
        ("trained on", info["trained_on"] or "(not recorded)"),
        ("training footage", info["training_footage"] or "(no fingerprint: occ calibrate cannot check for training frames)"),
        ("scene guard's view", _scene(info["scene_reference"])),
        ("drift watch's reference", _drift(info.get("drift_reference"))),
    ]
    table(info["file"], [{"field": k, "value": v} for k, v in rows])
    table("thresholds (the stored ones decide; earlier values below)", [
        {"name": name, "value": f"{t['value']:.6g}", "from": t["data"], "false alarms": None if (rate := t["target_false_alarm_rate"]) is None else f"{rate:.2%}", "frames": t["n_samples"], "alarms / h": expected_alarms_text(t), "how": t["method"],
         "by": t.get("by") or "", "date": t["date"]}
        for name, t in info["thresholds"].items()] + [
        {"name": f"{old['name']} (until {old.get('replaced_on', '?')})", "value": f"{old['value']:.6g}", "from": old.get("data"),
         "frames": old.get("n_samples"), "alarms / h": expected_alarms_text(old), "how": old.get("method"), "by": old.get("by") or "",
         "date": old.get("date")} for old in info["threshold_history"]])
    table("backends on this machine", [{"backend": b["backend"], "usable": "yes" if b["usable"] else "no", "why not": b["why_not"] or ""}
                                       for b in info["backends"]])
    for t in info["thresholds"].values():
        if t["warning"]:
            err_console.print(f"warning: {t['warning']}", highlight=False, markup=False)


def _since(cause: dict[str, Any]) -> str:
    """When a cause started: the capture time (live), or the position in the file, and when the service saw it."""
    at = cause["wall_time"] or (f"{cause['clip_s']:g} s into the file" if cause["clip_s"] is not None else f"frame {cause['frame']}")
    return f"{at} (frame {cause['frame']}; seen {cause['noticed']})"


def _why(cause: dict[str, Any]) -> str:
    if cause["type"] == "drift":
        measured = cause["statistic"] is not None and cause["threshold"] is not None
        return "scores drifted" + (f" (KS statistic {cause['statistic']:.3g} over {cause['threshold']:.3g})" if measured else "")
    return f"scene changed: {cause['reason']}"


def _show_cameras(result: dict[str, Any]) -> None:
    """One line per camera (not a table: the reasons and times are long, and a line stays whole for grep)."""
    console.print(f"{result['path']}: {sum(s['needs_calibration'] for s in result['cameras'])} of {len(result['cameras'])} "
                  "camera(s) need occ calibrate", highlight=False, markup=False, soft_wrap=True)
    for state in result["cameras"]:
        service = f"service {state['service']}, as of {state['updated']}; model {state['model']}"
        needs = "; ".join(f"{_why(cause)} since {_since(cause)}" for cause in state["causes"])
        console.print(f"{state['camera']}: " + (f"needs occ calibrate: {needs}" if state["needs_calibration"] else "no calibration needed")
                      + f" ({service})", highlight=False, markup=False, soft_wrap=True)
