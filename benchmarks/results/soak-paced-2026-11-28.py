"""The soak of benchmarks/soak.py with the stream paced at the clip's 10 frames per second (ffmpeg -re).

benchmarks/soak.py serves the clip as fast as ffmpeg can, so the service keeps only the newest of many frames and
the frame-difference input sees jumps the model never saw: nearly every frame is anomalous and one event lasts the
whole run. Paced like a camera, the clip's anomalies open and close events, and the full disk meets them.

    nice -n 19 .venv/bin/python benchmarks/results/soak-paced-2026-11-28.py 3000 benchmarks/results/soak-paced-2026-11-28-cpu.json
"""
import json
import subprocess
import sys

import occ.benchmarks.soak as soak


def _serve(ffmpeg, video, port):
    return subprocess.Popen([ffmpeg, "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video), "-f", "mpjpeg",
                             "-listen", "1", f"http://127.0.0.1:{port}/stream"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


soak._serve = _serve
result = soak.run_soak("/tmp/soak-model/alocc.onnx", frames=int(sys.argv[1]), sample_every=250, warmup_frames=1000)
result["stream"] = "ffmpeg -re: paced at the clip's 10 frames per second"
with open(sys.argv[2], "w") as handle:
    json.dump(result, handle, indent=2)
    handle.write("\n")
print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
