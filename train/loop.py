"""The training skeleton ALOCC and AVID share: seeding, epochs of batches, validation and model
selection on normal data, then calibration, the manifest and the checkpoint. Under ``torchrun``
every process trains on its shard of each batch (:mod:`occ.train.distributed`); rank 0
calibrates and writes the checkpoint."""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from rich.console import Console
from torch import nn

from occ import __version__
from occ.runtime.manifest import Manifest, Threshold

from .common import CollapseMonitor, batches, evenly_spaced, make_optimizer, progress_bar, save_checkpoint, seed_everything
from .distributed import Distributed, plain_state_dict


@dataclass
class Selection:
    """Model selection on normal data: the weights of ``networks`` from the epoch whose validation
    ``metric`` was best, recorded in the manifest as ``record_as``."""

    networks: tuple[str, ...]
    metric: str
    record_as: str
    lower_is_better: bool = True
    mark: str = "  *"  # on the line of an epoch whose weights are kept
    epoch: int = 0
    value: float = float("nan")
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def offer(self, record: dict[str, Any], networks: dict[str, nn.Module]) -> str:
        """Keep the epoch's weights if its metric is the best so far; its mark if kept."""
        value = record[self.metric]
        if self.epoch and not (value < self.value if self.lower_is_better else value > self.value):
            return ""
        self.epoch, self.value = record["epoch"], value
        self.states = {name: plain_state_dict(networks[name]) for name in self.networks}
        return self.mark


class Deployment(NamedTuple):
    """What a method deploys: the manifest's own parts (``patches`` or ``regions``, ``scoring``),
    thresholds, the checkpoint's architecture and networks, held-out inputs to verify export on."""

    parts: dict[str, Any]
    thresholds: dict[str, Threshold]
    architecture: dict[str, Any]
    networks: dict[str, nn.Module]
    held_out: np.ndarray


class AdversarialTraining:
    """Two networks trained against each other on normal data (``data.train``). A method sets
    :attr:`method`, :attr:`optimizer` and :attr:`losses` and fills in the hooks:

    - ``build() -> {name: network}``: the networks, freshly initialised (the global torch generator is seeded);
    - ``step(index) -> (losses, collapse_loss)``: train on the global batch of sample rows ``index``;
      the :attr:`losses` (global means) and the D loss whose collapse :class:`CollapseMonitor` watches;
    - ``validate() -> {metric: value}`` on held-out normal data, and ``epoch_line(record) -> str``;
    - ``deploy(networks) -> Deployment``: calibrate the selected plain networks (CPU, eval mode);
    - ``run_record(history)``: the method's own entries in the manifest's training record.
    """

    method = ""  # the manifest's
    optimizer = "adam"
    losses: tuple[str, ...] = ()
    selections: list[Selection]  # which weights model selection keeps

    def __init__(self, config: Any, data: Any, console: Console | None = None):
        self.config, self.data = config, data
        self.ddp = Distributed.from_env()
        self.console = (console or Console()) if self.ddp.is_main else Console(file=io.StringIO())
        self.generator = seed_everything(config.seed)
        self.networks = {name: self.ddp.prepare(network) for name, network in self.build().items()}
        self.optimizers = {name: make_optimizer(self.optimizer, network.parameters(), config.lr, config.momentum)
                           for name, network in self.networks.items()}

    def run_record(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {}

    @property
    def calibration_data(self) -> str:
        return f"{self.data.description} (held-out normal frames)"

    def update(self, name: str, loss: torch.Tensor, weight: float, max_grad_norm: float | None = None) -> None:
        """One optimizer step of network ``name`` on ``loss`` (this process's share ``weight``)."""
        optimizer, network = self.optimizers[name], self.networks[name]
        optimizer.zero_grad(set_to_none=True)
        (loss * weight).backward()
        self.ddp.average_gradients(network)
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(network.parameters(), max_grad_norm)
        optimizer.step()

    def global_means(self, losses: dict[str, torch.Tensor], local: int, total: int) -> dict[str, float]:
        return {name: self.ddp.global_mean(loss.item(), local, total) for name, loss in losses.items()}

    def fit(self, out: str | Path) -> Manifest | None:
        """Train, keep the selected weights, calibrate and write the checkpoint ``out``; its manifest
        (None on ranks other than 0)."""
        config, console = self.config, self.console
        monitor, selections = CollapseMonitor(), self.selections
        history: list[dict[str, Any]] = []
        started = time.monotonic()
        with progress_bar(console) as progress:
            for epoch in range(1, config.epochs + 1):
                for network in self.networks.values():
                    network.train()
                order = batches(len(self.data.train), config.batch_size, self.generator)
                task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=len(order))
                losses: dict[str, list[float]] = {name: [] for name in self.losses}
                collapse_losses: list[float] = []
                for index in order:
                    if len(index) < 2 * self.ddp.world:  # batch norm needs two samples
                        continue
                    step, collapse_loss = self.step(index)
                    for name, value in step.items():
                        losses[name].append(value)
                    collapse_losses.append(collapse_loss)
                    progress.advance(task)
                progress.remove_task(task)
                record = {"epoch": epoch, **{name: float(np.mean(values)) for name, values in losses.items()}, **self.validate(),
                          "seconds": round(time.monotonic() - started, 1)}
                marks = "".join([selection.offer(record, self.networks) for selection in selections])
                history.append(record)
                console.print(self.epoch_line(record) + marks, highlight=False)
                collapse = monitor.update(epoch, float(np.mean(collapse_losses)), float(np.std(collapse_losses)))
                if collapse:
                    console.print(f"[yellow]warning:[/yellow] {collapse}", highlight=False)

        assert history, "no epoch ran"
        if not self.ddp.is_main:  # rank 0 calibrates and writes the checkpoint
            return None
        # the rest runs on the CPU with plain networks (no synchronised batch norm)
        networks = self.build()
        for selection in selections:
            for name in selection.networks:
                networks[name].load_state_dict(selection.states[name])
        for network in networks.values():
            network.eval()
        deployment = self.deploy(networks)
        manifest = Manifest(
            method=self.method, input=self.data.spec, **deployment.parts, occ_version=__version__,
            training={**self.data.summary, "config": asdict(config), **{s.record_as: s.epoch for s in selections},
                      **self.run_record(history), "collapse_events": monitor.events, "seconds": round(time.monotonic() - started, 1)},
        )
        for name, threshold in deployment.thresholds.items():
            manifest.set_threshold(name, threshold)
        manifest.validate()
        verification = deployment.held_out[evenly_spaced(len(deployment.held_out), 8)]
        save_checkpoint(out, manifest, deployment.architecture, deployment.networks, history, verification_inputs=verification)
        return manifest
