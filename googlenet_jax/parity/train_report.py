"""The report of `parity --train_steps`: its rows and per-step series, the header, the JSON, the
replay file (--save_run) and the picture (--plot).

    report.table(), report.to_json(), header(report), save_run(report, path), plot(report, path)
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from googlenet_jax.parity.report import ParityReport
from googlenet_jax.parity.train_recipe import TorchRecipe
from googlenet_jax.weights import torch_layout

# The report's sections, in the order of its rows.
SECTIONS = {"step loss": "steps", "parameter after the first update": "parameters_after_first_update",
            "parameter": "parameters", "momentum buffer": "momentum_buffers",
            "running statistic": "running_statistics", "Polyak average": "polyak_average",
            "eval logits": "eval_logits"}


@dataclasses.dataclass
class TrainParityReport(ParityReport):
    """Rows in SECTIONS order; `steps`: the per-step series (the plot's); `replay`: what --save_run writes."""

    section_titles: ClassVar[dict[str, str]] = {
        "step loss": "training loss of each step, before its update (both losses, the learning rate and the "
                     "baseline's drift in the notes)",
        "parameter after the first update": "parameters after the first step with a learning rate > 0 (only the "
                                            "recipes act there)",
        "parameter": "parameters after the last step (torch state_dict names)",
        "momentum buffer": "momentum buffers after the last step",
        "running statistic": "BatchNorm running statistics after the last step",
        "Polyak average": "Polyak average of the parameters after the last step",
        "eval logits": "eval-mode logits of the trained models",
    }

    steps: dict = dataclasses.field(default_factory=dict)
    replay: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        """{"settings", "steps": [{"step", "learning_rate", "jax_loss", "torch_loss", "rel_error",
        "baseline_rel_error", "ok"}], "parameters_after_first_update", "parameters", "momentum_buffers",
        "running_statistics", "polyak_average", "eval_logits" (rows: name, shape, rel_error,
        max_abs_error, tolerance, ok), "notes", "first_divergence", "first_divergence_kind", "verdict"}."""
        base = super().to_json()
        s = self.steps
        step_rows = [row for row in self.rows if row.kind == "step loss"]
        per_step = [{"step": i + 1, "learning_rate": s["learning_rates"][i], "jax_loss": s["jax_losses"][i],
                     "torch_loss": s["torch_losses"][i], "rel_error": row.to_json()["rel_error"],
                     "baseline_rel_error": rel_error(s["baseline_losses"][i], s["torch_losses"][i]), "ok": row.ok}
                    for i, row in enumerate(step_rows)]
        sections = {key: [row.to_json() for row in self.rows if row.kind == kind]
                    for kind, key in SECTIONS.items() if kind != "step loss"}
        return {"settings": self.settings, "steps": per_step, **sections,
                **{key: base[key] for key in ("notes", "first_divergence", "first_divergence_kind", "verdict")}}


def rel_error(a, b) -> float:
    """||a - b|| / ||b|| (inf for different shapes)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / scale) if scale else float(np.linalg.norm(a - b))



def header(report: TrainParityReport) -> str:
    s = report.settings
    return "\n".join([
        f"GoogLeNet training parity, {s['variant']} variant: train.py's step (Flax) against {s['reference']} "
        "trained by a torch loop",
        f"config: {s['config']}" + (f" {' '.join(s['overrides'])}" if s["overrides"] else ""),
        f"{s['train_steps']} steps of batch {s['batch_size']}, {s['dtype']}; weights: {s['weights']}",
        f"inputs: {s['inputs']}",
        f"recipe: {s['recipe']}",
    ])


def save_run(report: TrainParityReport, path: str) -> None:
    """The replay file (DESIGN.md's --save_run keys): a user's own torch trainer can rerun it."""
    saved = report.replay
    recipe: TorchRecipe = saved["recipe"]
    arrays = {f"init/{k}": v for k, v in torch_layout.flax_to_torchvision(
        saved["variables"], return_numpy=True).items()}
    arrays.update({f"final/{k}": v for k, v in torch_layout.flax_to_torchvision(
        saved["ours"].variables, return_numpy=True).items()})
    config = saved["config"]
    arrays.update(
        images=saved["images"], labels=saved["labels"], learning_rates=np.asarray(saved["ours"].learning_rates),
        jax_losses=np.asarray(saved["ours"].losses), decayed=np.asarray(sorted(recipe.decayed)),
        momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
        label_smoothing=recipe.label_smoothing, aux_weight=recipe.aux_weight,
        transform_input=bool(config.model.transform_input), variant=config.model.variant,
        optimizer=recipe.optimizer, grad_clip_norm=recipe.grad_clip_norm, ema_decay=recipe.ema_decay,
        bn_running_var=recipe.bn_running_var)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def plot(report: TrainParityReport, path: str) -> None:
    """The two loss curves, and the per-step relative difference beside the baseline (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    s, steps = report.settings, report.steps
    x = np.arange(1, len(steps["jax_losses"]) + 1)
    theirs = np.asarray(steps["torch_losses"])
    ours_diff = np.abs(np.asarray(steps["jax_losses"]) - theirs) / np.abs(theirs)
    baseline_diff = np.abs(np.asarray(steps["baseline_losses"]) - theirs) / np.abs(theirs)
    floor = np.finfo(np.float64 if s["dtype"] == "float64" else np.float32).eps / 2  # log scale: no zeros
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(x, steps["jax_losses"], "o-", label="ours (Flax)")
    top.plot(x, theirs, "x--", label="torch")
    top.set_ylabel("training loss")
    top.legend()
    top.set_title(f"{s['variant']}, {s['dtype']}, batch {s['batch_size']}, {s['image_size']}x{s['image_size']}")
    bottom.semilogy(x, np.maximum(ours_diff, floor), "o-", label="|ours - torch| / |torch|")
    bottom.semilogy(x, np.maximum(baseline_diff, floor), "x--", label="baseline: torch, learning rates perturbed")
    tolerance = s["tolerances"]["step loss"]
    bottom.axhline(tolerance, color="red", linewidth=1, label=f"tolerance {tolerance:g}")
    bottom.set_xlabel("step")
    bottom.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    bottom.set_ylabel("relative difference of the loss")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
