"""The parity figures recorded in a manifest, read once into dataclasses for whoever reports them.

The manifest keeps parity as plain JSON (`Manifest.parity`); `ParityReport.of` is the one place that
knows its keys, so the CLI prints attributes, not string lookups.
"""

from __future__ import annotations

from dataclasses import dataclass

NAN = float("nan")


def _num(d: dict, key: str) -> float:
    try:
        return float(d[key])
    except (KeyError, TypeError, ValueError):
        return NAN


@dataclass(frozen=True)
class GradientFigure:
    """max|g_onnx - g_torch| / max|g_torch| on one probe batch, and PyTorch's float32 / float64 figures."""

    batch: str
    graph: float
    float32: float
    float64: float


@dataclass(frozen=True)
class Bounded:
    """One trajectory figure: the graph's value, PyTorch's own float32-vs-float64 spread, and the bound."""

    graph: float
    spread: float
    bound: float


@dataclass(frozen=True)
class TrajectoryFigure:
    """The trajectory figures of one update rule over the parity steps."""

    rule: str
    deployed: bool
    energy: Bounded
    map_correlation: Bounded  # its bound is a minimum
    pixel_auroc_diff: Bounded
    uninformative: tuple[str, ...]  # figures PyTorch cannot judge itself (rules that are not deployed only)


@dataclass(frozen=True)
class OptimizerFigure:
    """The graph's Adam tail against numpy Adam from a non-zero state."""

    rule: str
    steps: int
    x_abs: float
    m_rel: float
    v_rel: float


@dataclass(frozen=True)
class ParityReport:
    """Everything export measured against PyTorch, as recorded in the manifest."""

    measured: bool
    probe: str
    steps: int | None
    passed: bool
    accepted_failures: tuple[str, ...]
    gradient: tuple[GradientFigure, ...]
    trajectories: tuple[TrajectoryFigure, ...]
    optimizer: tuple[OptimizerFigure, ...]
    split_dropped: str | None  # why the forward/update pair was not written, when it was not
    split_max_err: float | None  # forward + update graphs against the step graph

    @property
    def synthetic_probe(self) -> bool:
        return self.probe.startswith("synthetic")

    @classmethod
    def of(cls, parity: dict) -> ParityReport:
        """The report of a manifest's `parity` section (older manifests lack some figures: NaN or empty)."""
        from edgeproj.export.parity import trajectory_bounds, trajectory_figures

        deployed_rule = parity.get("deployed_rule")
        uninformative = parity.get("uninformative", {})
        trajectories = []
        for rule, fig in parity.get("trajectory", {}).items():
            deployed = deployed_rule in (None, rule)
            g, b, sp = trajectory_figures(fig), trajectory_bounds(fig, strict=deployed), fig.get("reference_spread", {})
            trajectories.append(
                TrajectoryFigure(
                    rule=rule,
                    deployed=deployed,
                    energy=Bounded(
                        g["energy_traj_rel_max_err"], _num(sp, "energy_traj_rel_max_err"), b["energy_traj_rel_max_err"]
                    ),
                    map_correlation=Bounded(g["map_correlation"], _num(sp, "map_correlation"), b["map_correlation_min"]),
                    pixel_auroc_diff=Bounded(g["pixel_auroc_diff"], _num(sp, "pixel_auroc_diff"), b["pixel_auroc_diff"]),
                    uninformative=() if deployed else tuple(uninformative.get(rule) or ()),
                )
            )
        split = parity.get("split", {})
        return cls(
            measured=bool(parity.get("measured", True)),
            probe=str(parity.get("probe", "")),
            steps=parity.get("steps"),
            passed=bool(parity.get("passed")),
            accepted_failures=tuple(parity.get("accepted_failure") or ()),
            gradient=tuple(
                GradientFigure(
                    b,
                    _num(f, "grad_rel_max_err"),
                    _num(f.get("float32", {}), "grad_rel_max_err"),
                    _num(f.get("float64", {}), "grad_rel_max_err"),
                )
                for b, f in parity.get("gradient", {}).items()
            ),  # fmt: skip
            trajectories=tuple(trajectories),
            optimizer=tuple(
                OptimizerFigure(
                    rule, int(f["steps"]), _num(f, "x_max_abs_err"), _num(f, "m_rel_max_err"), _num(f, "v_rel_max_err")
                )
                for rule, f in parity.get("optimizer", {}).items()
            ),
            split_dropped=split.get("dropped") or None,
            split_max_err=_num(split, "max_err") if "max_err" in split else None,
        )
