"""Every number in the README's results is found in a committed JSON result file.

The rule, applied to the README as committed:

- **Results sections**: each ``### `` heading between ``## Results`` and the next ``## `` heading,
  with its text up to the next heading.
- **A section's JSON files**: every ``*.json`` name the section writes as ``benchmarks/results/NAME``
  or as a bare ``NAME`` in that folder (``{a,b}`` alternatives and ``*`` wildcards expanded; other
  paths, like a command's ``runs/demo.json``, are outputs, not committed results). A section with
  numbers must name at least one, and each name must match a committed file.
- **Numbers**: every decimal number in the section's text (``1,096`` is 1096), except what is not a
  result: text inside backticks (commands and their arguments, file names), dates ``YYYY-MM-DD``
  (and ``YYYY-MM-DD/DD``), clock times ``HH:MM``, ``x86-64``, commit hashes, sizes (``120×180``,
  ``20-px``), core counts (``2-core``, ``2 cores``), clip names and ranges (``001–006``,
  ``Test003``), and the phrases in :data:`SETTINGS`: counts of seeds, folds, epochs, walkers,
  events, frames and patches given as settings, batch sizes, and the 95 % of an interval. Figures
  the text marks as the papers' or as aims are exempt too: table rows starting ``| papers``,
  parentheses opening ``(paper:`` and the parentheses after ``The aims``.
- **Found**: a number with d decimals matches a JSON value that rounds to it at d decimals; or, for
  a value between −1 and 1, whose ×100 does (a fraction shown as a percentage); or, for a value
  under a key ending in ``hours``, whose ×60 or ×3600 does (minutes or seconds). Integers match
  values that round to them. A number may match any of the section's files, but not values inside
  lists of more than 5 items: those are per-frame, per-clip, per-fold or per-hour records, which the
  README summarizes and never quotes.

The last tests change figures in a copy of the README and check that the matcher then fails, so
this check cannot pass whatever the README says. Its limit: a changed figure goes unnoticed when
another value of the section's files rounds to it, which happens often for integers and one- or
two-digit figures (a count of 3 alarms is in many places); figures of three or more significant
digits are caught far more often (the last test holds that rate).
"""
from __future__ import annotations

import glob
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"

# Phrases whose numbers are settings or counts, not results (matched before numbers are read).
SETTINGS = [
    r"\d+ / \d+ / \d+ / \d+\s+walkers in view, training has \d+",
    r"seeds? \d+(?:\s*[/–-]\s*\d+)*",
    r"\d+ folds?",
    r"\d+ epochs?",
    r"the \d+ ways to choose on three clips",
    r"\(\d+ frames at\s+\d+ fps\)",
    r"\d+ s per variant",
    r"batch \d+",
    r"\(\d+ patches a frame\)",
    r"\d+ events?\b(?! caught| flagged)",
    r"--\S+ \S+",
    r"\d+ cores",
    r"95 %",                                      # the confidence level of an interval
    r"\d+ % (?:outliers|false alarms)",           # MNIST's protocol: the test set's mix, the threshold's rate
]
NOT_RESULTS = [
    r"`[^`]*`",                                   # commands, arguments, file names
    r"\d{4}-\d{2}-\d{2}(?:/\d{2})?",               # dates, and day ranges like 2026-11-26/28
    r"x86-64",
    r"AVX-512",                                   # a CPU's vector units
    r"\b\d{2}:\d{2}\b",                            # clock times
    r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b",  # commit hashes
    r"\d+×\d+",                                   # sizes
    r"\d+-(?:px|core)\b",                         # patch sizes, core counts
    r"\b\d{3}–\d{3}\b|Test\d{3}",                # clip ranges and names
    r"\| papers[^\n]*",                           # the papers' figures
    r"\(paper:[^)]*\)",
    r"The aims \([^)]*\)",
]
NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")
JSON_NAME = re.compile(r"[\w{},.*/-]+\.json")


def results_sections(text: str) -> dict[str, str]:
    """``### `` heading → its text, for the headings under ``## Results``."""
    part = text.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    sections = {}
    for chunk in part.split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        sections[heading.strip()] = body
    return sections


def expand(name: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", name)
    if not match:
        return [name]
    return [e for option in match.group(1).split(",") for e in expand(name[: match.start()] + option + name[match.end():])]


def json_files(section: str) -> tuple[list[Path], list[str]]:
    """The committed files the section names, and the names that match none."""
    files, missing = [], []
    for name in set(JSON_NAME.findall(section)):
        if "/" in name and not name.startswith("benchmarks/results/"):
            continue  # a command's output path (runs/...), not a committed result
        for pattern in expand(name):
            found = sorted(glob.glob(str(RESULTS / Path(pattern).name)))
            if found:
                files += [Path(f) for f in found]
            else:
                missing.append(pattern)
    return sorted(set(files)), missing


def json_values(files: list[Path]) -> list[float]:
    """Every number in the files as the README may show it: as is, ×100, and hours also as minutes and seconds."""
    values: list[float] = []

    def walk(node, key: str) -> None:
        if isinstance(node, bool) or node is None:
            return
        if isinstance(node, (int, float)):
            scales = (1, 60, 3600) if key.endswith("hours") else (1, 100) if abs(node) <= 1 else (1,)
            values.extend(scale * float(node) for scale in scales)
        elif isinstance(node, dict):
            for name, child in node.items():
                walk(child, name)
        elif isinstance(node, list):
            if len(node) > 5:
                return
            for child in node:
                walk(child, key)

    for path in files:
        walk(json.loads(path.read_text()), "")
    return values


def result_numbers(section: str) -> list[str]:
    """The numbers of a section that are results, by the rule above."""
    text = section
    for pattern in NOT_RESULTS + SETTINGS:
        text = re.sub(pattern, " ", text)
    return NUMBER.findall(text)


def is_found(number: str, values: list[float]) -> bool:
    digits = len(number.split(".")[1]) if "." in number else 0
    wanted = float(number.replace(",", ""))
    tolerance = 0.5 * 10 ** -digits + 1e-9
    return any(abs(v - wanted) <= tolerance for v in values)


def unbacked(readme_text: str) -> dict[str, list[str]]:
    """Section → its result numbers no named JSON holds (and the JSON names that match no file)."""
    problems = {}
    for heading, body in results_sections(readme_text).items():
        numbers = result_numbers(body)
        files, missing = json_files(body)
        if not numbers:
            continue
        if not files:
            problems[heading] = ["names no committed JSON"] + missing
            continue
        values = json_values(files)
        lost = [n for n in numbers if not is_found(n, values)]
        if lost or missing:
            problems[heading] = lost + [f"{m}: no such file" for m in missing]
    return problems


def test_every_results_number_is_in_a_committed_json():
    assert unbacked(README.read_text()) == {}


def test_the_rule_finds_the_sections_and_their_numbers():
    sections = results_sections(README.read_text())
    assert len(sections) >= 5
    assert sum(len(result_numbers(body)) for body in sections.values()) > 50


def test_a_changed_readme_number_fails():
    text = README.read_text()
    for old, new in (("0.941 / 0.929 / 0.940", "0.971 / 0.929 / 0.940"), ("3.4 ms, 294 frames/s", "3.4 ms, 291 frames/s"),
                     ("3.1 per hour", "3.7 per hour")):
        assert old in text, f"README no longer says {old!r}: update this test's example"
        changed = text.replace(old, new, 1)
        assert unbacked(changed), f"changing {old!r} to {new!r} went unnoticed"


def test_a_figure_without_a_json_fails():
    text = README.read_text().replace("No GPU latency is quoted", "GPU latency: 0.8137 ms at batch 1", 1)
    assert "0.8137" in unbacked(text)["Latency on the CPU"]
    text = README.read_text().replace("JSON `benchmarks/results/mnist-alocc-seed0-2026-12-07-cpu.json`", "no JSON", 1)
    assert "no JSON" in text
    assert unbacked(text)["MNIST"] == ["names no committed JSON"]


def test_most_changed_three_digit_figures_are_caught():
    """Every figure of three or more significant digits, its last digit changed to each other digit."""
    changes = caught = 0
    for body in results_sections(README.read_text()).values():
        files, _ = json_files(body)
        values = json_values(files)
        for number in result_numbers(body):
            if len(number.replace(",", "").replace(".", "").lstrip("0")) < 3:
                continue
            for digit in "0123456789":
                if digit != number[-1]:
                    changes += 1
                    caught += not is_found(number[:-1] + digit, values)
    assert changes > 100
    assert caught / changes >= 0.6, f"only {caught} of {changes} changed figures would be noticed"
