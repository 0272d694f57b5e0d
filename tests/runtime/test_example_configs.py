"""The example service configurations shipped in the repository parse with the service's own loader,
so a renamed or removed key cannot leave an example behind: docs/deploy/*.toml, every ```toml block
in docs/*.md (a fragment under a minimal [model] and [source]), and the configuration module's own
example. The complete configuration of docs/deploy.md also passes the whole check on this machine."""
import re
from pathlib import Path

import pytest

from occ.benchmarks.sink_servers import PAHO_MISSING
from occ.runtime.service import ServiceConfig
from occ.runtime.service import config as service_config
from occ.runtime.service.config import parse_toml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.S | re.M)
COMPLETE_MARK = "<!-- complete-configuration -->\n```toml\n"
MINIMAL_HEAD = '[model]\npath = "model.onnx"\n[source]\nspec = "clip.mp4"\n'


def doc_blocks() -> list[tuple[str, str]]:
    return [(f"{page.name} block {i + 1}", block) for page in sorted(DOCS.glob("*.md"))
            for i, block in enumerate(TOML_BLOCK.findall(page.read_text()))]


def as_configuration(block: str) -> str:
    """A block that names its model is a whole configuration; a fragment gets a model and a source."""
    if re.search(r"^\[model\]", block, re.M):
        return block
    head = MINIMAL_HEAD if not re.search(r"^\[\[cameras\]\]|^\[source\]", block, re.M) else MINIMAL_HEAD.split("[source]")[0]
    return head + block


def module_example() -> str:
    """The TOML example in runtime/service/config.py's docstring, unindented."""
    text = service_config.__doc__.split("::\n", 1)[1]
    lines = []
    for line in text.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines) + "\n"


def test_the_docs_hold_the_examples_this_test_reads():
    names = [name for name, _ in doc_blocks()]
    assert any(name.startswith("deploy.md") for name in names) and any(name.startswith("own-camera.md") for name in names)
    assert COMPLETE_MARK in (DOCS / "deploy.md").read_text()
    assert sorted(p.name for p in (DOCS / "deploy").glob("*.toml")) == ["site.example.toml"]
    assert "[sinks.webhook]" in module_example()


@pytest.mark.parametrize("example", sorted(p.name for p in (DOCS / "deploy").glob("*.toml")))
def test_the_shipped_example_files_parse_with_and_without_their_optional_keys(example, tmp_path):
    config = parse_toml(DOCS / "deploy" / example, check=False)
    assert config.cameras and config.model
    # the keys and tables left commented out ("# drift = true", "# [sinks.mqtt]") are real ones too
    uncommented = re.sub(r"^# ?(?=\[|[a-z_]+ = )", "", (DOCS / "deploy" / example).read_text(), flags=re.M)
    assert uncommented != (DOCS / "deploy" / example).read_text()
    path = tmp_path / example
    path.write_text(uncommented)
    config = parse_toml(path, check=False)
    assert config.mqtt is not None and config.webhook is not None


@pytest.mark.parametrize("name, block", doc_blocks(), ids=[name for name, _ in doc_blocks()])
def test_every_toml_example_in_the_docs_parses(name, block, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(as_configuration(block))
    parse_toml(path, check=False)


def test_the_configuration_modules_own_example_parses(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(module_example())
    config = parse_toml(path, check=False)
    assert config.mqtt is not None and config.webhook is not None and config.profiles is not None


def test_the_complete_configuration_in_deploy_md_passes_the_whole_check(alocc_onnx, tmp_path, monkeypatch):
    """Zones, profiles, the guard, the drift watch and both sinks, as docs/deploy.md gives them; only
    the machine's paths, the port and the secrets are this test's."""
    pytest.importorskip("paho.mqtt.client", reason=PAHO_MISSING)  # its [sinks.mqtt] needs the mqtt extra
    block = (DOCS / "deploy.md").read_text().split(COMPLETE_MARK, 1)[1].split("```", 1)[0]
    block = block.replace("/var/lib/occ/models/gate.onnx", str(alocc_onnx)).replace("/var/lib/occ/", f"{tmp_path}/")
    block = re.sub(r"^port = 9100", "port = 0", block, flags=re.M)
    monkeypatch.setenv("OCC_MQTT_PASSWORD", "secret")
    monkeypatch.setenv("OCC_WEBHOOK_SECRET", "secret")
    path = tmp_path / "site.toml"
    path.write_text(block)
    config = ServiceConfig.from_toml(path)
    assert [camera.name for camera in config.cameras] == ["gate", "yard"]
    assert [zone.name for zone in config.cameras[0].zones] == ["road", "hedge", "headlights"]
    assert config.profiles is not None and config.profiles.thresholds["night"] == {"tau": 4.0}
    assert config.scene_guard and config.drift_watch
    assert config.mqtt is not None and config.mqtt.password_env == "OCC_MQTT_PASSWORD"
    assert config.webhook is not None and config.webhook.secret_env == "OCC_WEBHOOK_SECRET"
