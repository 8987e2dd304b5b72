"""What a retrain may be asked to change: K and the seed, each within the estimator's bounds."""

from __future__ import annotations

from dataclasses import dataclass, replace

from segmentation.errors import InputError
from segmentation.model.estimator import DEFAULT_K, MAX_K, MAX_SEED, MIN_K, RANDOM_STATE

BOUNDS = {"k": (MIN_K, MAX_K), "seed": (0, MAX_SEED)}


@dataclass(frozen=True)
class TrainOptions:
    """None: keep what the served model used (or the default when there is none)."""

    k: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name, (lo, hi) in BOUNDS.items():
            value = getattr(self, name)
            if value is not None and not lo <= value <= hi:
                raise InputError(f"{name} must be a whole number from {lo} to {hi:,}, not {value}")

    def keeping(self, k: int, seed: int) -> TrainOptions:
        """These options, with ``k`` and ``seed`` where they are unset (the served model's)."""
        return replace(self, k=self.k if self.k is not None else k, seed=self.seed if self.seed is not None else seed)

    def resolved(self) -> tuple[int, int]:
        """(K, seed), the product's defaults where unset."""
        return self.k or DEFAULT_K, RANDOM_STATE if self.seed is None else self.seed

    def describe(self) -> str:
        """ "k=12 seed=7", only what is set."""
        return " ".join(f"{name}={getattr(self, name)}" for name in sorted(BOUNDS) if getattr(self, name) is not None)
