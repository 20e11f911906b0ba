"""The report of `parity --train_steps`: its rows and per-step series, the header, the JSON, the
replay file (--save_run) and the picture (--plot).

    report = build(ours, theirs, baseline, logits, variables, tolerances, factor, perturbation)
    report.table(), report.to_json(), header(report), save_run(report, path), plot(report, path)
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from googlenet_jax.parity.layers.report import ParityReport, compare_arrays
from googlenet_jax.parity.replay.recipe import TorchRecipe
from googlenet_jax.weights import torch_layout

# Relative tolerance of each kind of row: max(floor, BASELINE_FACTOR x the baseline's drift in
# the same row, measured in the same run). float64: a fixed verdict, well above the drift of two
# correct trainers (the measurements: docs/parity.md, "Training parity", "Measured"). float32: every
# operation rounds differently on the two sides and BatchNorm over small maps amplifies that
# within a few steps; two torch runs part as far (the baseline), so float32 rows are judged
# against the baseline: only a gross error fails.
TRAIN_TOLERANCES = {
    "float64": {"step loss": 1e-8, "parameter after the first update": 1e-8, "parameter": 1e-8,
                "momentum buffer": 1e-7, "running statistic": 1e-8, "Polyak average": 1e-8, "eval logits": 1e-8},
    "float32": {"step loss": 5e-3, "parameter after the first update": 1e-5, "parameter": 1e-3,
                "momentum buffer": 1e-2, "running statistic": 1e-3, "Polyak average": 1e-3, "eval logits": 5e-3},
}
BASELINE_FACTOR = {"float64": 0.0, "float32": 100.0}
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



def build(ours, theirs, baseline, logits, init_variables, tolerances, factor: float,
          perturbation: float) -> TrainParityReport:
    """The rows of our run `ours` against the torch run `theirs` (an our_steps.OurRun, two
    torch_loop.TorchRun), `baseline` the perturbed torch run, `logits` (ours, theirs, baseline's) on
    the held-back batch; each row's tolerance is max(tolerances[kind], factor x the baseline's
    drift there)."""
    rows = []

    def row(kind, name, a, b, drift, note=""):
        return compare_arrays(kind, name, a, b, max(tolerances[kind], factor * drift), note=note)

    drift_so_far = 0.0  # per step: the largest baseline drift up to that step (it fluctuates)
    for step, (lr, a, b, c) in enumerate(zip(ours.learning_rates, ours.losses, theirs.losses, baseline.losses), 1):
        drift_so_far = max(drift_so_far, rel_error(c, b))
        rows.append(row("step loss", f"step {step}", a, b, drift_so_far,
                        note=f"ours {a:.10g}, torch {b:.10g}, lr {lr:.6g}; baseline {rel_error(c, b):.1e}"))
    our_final = torch_layout.flax_to_torchvision(ours.variables, return_numpy=True)
    params = parameter_names(init_variables)
    # After the first update only the recipes act (same weights, same batches, same gradients up
    # to rounding): a tensor over tolerance here is one the two optimizers treat differently.
    if ours.first_update and theirs.first_update:
        (our_step, our_params), (their_step, their_params) = ours.first_update, theirs.first_update
        our_first = _as_torch_names(our_params, ours.variables)
        base_first = baseline.first_update[1] if baseline.first_update else their_params
        note = "" if our_step == their_step else f"ours after step {our_step}, torch after step {their_step}"
        rows += [row("parameter after the first update", name, our_first[name], their_params[name],
                     rel_error(base_first[name], their_params[name]), note) for name in params]
    rows += [row("parameter", name, our_final[name], theirs.state_dict[name],
                 rel_error(baseline.state_dict[name], theirs.state_dict[name])) for name in params]
    if ours.momentum is not None or theirs.momentum:
        our_momentum = _as_torch_names(ours.momentum, ours.variables) if ours.momentum is not None else {}
        missing = np.zeros(0)
        rows += [row("momentum buffer", name, our_momentum.get(name, missing), theirs.momentum.get(name, missing),
                     rel_error(baseline.momentum.get(name, missing), theirs.momentum.get(name, missing)))
                 for name in params]
    rows += [row("running statistic", name, our_final[name], theirs.state_dict[name],
                 rel_error(baseline.state_dict[name], theirs.state_dict[name]))
             for name in our_final if name.endswith(("running_mean", "running_var"))]
    if ours.ema or theirs.ema:
        our_ema = _as_torch_names(ours.ema, ours.variables)
        rows += [row("Polyak average", name, our_ema[name], theirs.ema[name],
                     rel_error(baseline.ema[name], theirs.ema[name])) for name in params]
    our_logits, their_logits, baseline_logits = logits
    rows.append(row("eval logits", "held-back batch", our_logits, their_logits,
                    rel_error(baseline_logits, their_logits)))
    statistics = [n for n in theirs.state_dict if n.endswith(("running_mean", "running_var"))]
    def worst(a, b, names):
        return max((rel_error(a[n], b[n]) for n in names if n in a and n in b), default=0.0)

    notes = [
        "relative error = ||ours - torch|| / ||torch||; per step: the training loss before the step's "
        f"update; baseline: the same torch run with every learning rate x (1 + "
        f"{perturbation:g}) against the torch run, the drift of two correct trainers",
        f"baseline after the last step (worst tensor): parameters "
        f"{worst(baseline.state_dict, theirs.state_dict, params):.1e}, momentum buffers "
        f"{worst(baseline.momentum, theirs.momentum, params):.1e}, running statistics "
        f"{worst(baseline.state_dict, theirs.state_dict, statistics):.1e}",
        "dropout off on both sides; the eval logits are each trained model in eval mode (running "
        "statistics) on a held-back batch",
    ]
    if factor:
        notes.append(f"each row's tolerance: the larger of its kind's floor and {factor:g} x the baseline's drift "
                     "there (up to that step, for losses): float32 rounding differs in every operation, and "
                     "two torch runs part by percents within a few steps, so only a gross error fails; "
                     "--dtype float64 gives the exact verdict")
    steps = {"learning_rates": ours.learning_rates, "jax_losses": ours.losses, "torch_losses": theirs.losses,
             "baseline_losses": baseline.losses}
    return TrainParityReport(rows, notes, {}, steps=steps)


def _as_torch_names(tree, variables) -> dict[str, np.ndarray]:
    """A params-shaped tree (momentum, EMA) in torch's names and layouts."""
    return torch_layout.flax_to_torchvision({**variables, "params": tree}, return_numpy=True)


def recipe_text(recipe: TorchRecipe, num_params: int) -> str:
    parts = [f"{recipe.optimizer} momentum {recipe.momentum:g}" + (" (Nesterov)" if recipe.nesterov else ""),
             f"weight decay {recipe.weight_decay:g} on {len(recipe.decayed)} of {num_params} parameter tensors",
             f"label smoothing {recipe.label_smoothing:g}", f"aux weight {recipe.aux_weight:g}",
             f"BatchNorm running variance {recipe.bn_running_var}"]
    if recipe.optimizer == "lars":
        parts.append(f"trust coefficient {recipe.trust_coefficient:g}")
    if recipe.grad_clip_norm:
        parts.append(f"gradient clipping at global norm {recipe.grad_clip_norm:g}")
    parts.append(f"Polyak average {recipe.ema_decay:g}" if recipe.ema_decay else "no Polyak average")
    return ", ".join(parts)


def parameter_names(variables) -> list[str]:
    """The torch parameter names (not buffers) of our variables, in torch's order."""
    names = torch_layout.flax_to_torchvision({**variables}, return_numpy=True)
    return [name for name in names if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))]


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
