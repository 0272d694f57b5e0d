"""Every probe of tests/reliability.py answers as docs/reliability.md says: one line, the right exit code."""
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from occ.cli import app

from reliability import BUSY, PROBES, anonymous, markdown, run_probe

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


def test_at_least_sixty_probes_are_written_down():
    assert len(PROBES) >= 60
    assert len({(p.area, p.what) for p in PROBES}) == len(PROBES)


@pytest.fixture(scope="module")
def answers(alocc_onnx, avid_onnx, alocc_checkpoint, tmp_path_factory):
    runner = CliRunner()

    def invoke(args):
        result = runner.invoke(app, args, env={"COLUMNS": "400"})
        return result.exit_code, result.output

    models = {"alocc": alocc_onnx, "avid": avid_onnx, "alocc_pt": alocc_checkpoint}
    root = tmp_path_factory.mktemp("probes")
    results = []
    import occ.benchmarks.torch_backend  # noqa: F401  (registers "torch", as occ-bench does)
    from occ.runtime.backends import REGISTRY

    torch_kind = REGISTRY["torch"]
    try:
        for number, probe in enumerate(PROBES):
            folder = root / f"p{number:03d}"
            # a fresh `occ run` knows only the runtime's backends; occ-bench adds PyTorch's
            if probe.args[0] != "bench":
                REGISTRY.pop("torch", None)
            result = run_probe(probe, folder, models, invoke)
            REGISTRY["torch"] = torch_kind
            results.append((result, anonymous(result.line, folder, models)))
    finally:
        for listener in BUSY:
            listener.close()
        BUSY.clear()
    return results


def test_every_probe_gets_one_line_and_its_exit_code(answers):
    wrong = [(r.probe.what, r.code, r.line) for r, _ in answers
             if r.code != r.probe.code or r.probe.message not in r.line or r.lines != 1 or "Traceback" in r.line]
    assert not wrong, "\n".join(map(str, wrong))


def test_the_document_is_what_occ_answers(answers):
    text = markdown(answers)
    if os.environ.get("OCC_WRITE_RELIABILITY"):
        DOC.write_text(text + DOC.read_text().split("\n## ", 1)[1].join(["\n## ", ""]) if DOC.is_file() and "\n## " in DOC.read_text()
                       else text)
    table = DOC.read_text().split("\n## ", 1)[0]
    assert table.strip() == text.strip(), "docs/reliability.md is out of date: OCC_WRITE_RELIABILITY=1 rewrites it"
