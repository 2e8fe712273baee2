"""What a labelling job did: :class:`LabelSummary`, returned by every entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("read", "tokenize", "model", "write", "merge")


@dataclass
class LabelSummary:
    """What a labelling job did. ``rows``/``flagged`` count the units computed by this job."""

    output: Path | None            # the final file (None for a shard: merge pending)
    rows: int = 0
    flagged: int = 0               # rows without usable input (NaN predictions)
    units_done: int = 0
    units_skipped: int = 0         # already finished (resume)
    units_total: int = 0           # in the whole plan
    output_rows: int | None = None  # rows in the final file (None until merged)
    output_flagged: int | None = None
    wall_s: float = 0.0
    timings: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))   # seconds per stage
    no_g: int = 0                  # XP rows without G: coefficients not gnormed, counted missing
    photometry: list = field(default_factory=list)          # photometry files of the plan
    photometry_joined: list = field(default_factory=list)   # rows found in each of them
    output_no_g: int | None = None

    @classmethod
    def already_merged(cls, output: Path, n_units: int, metadata: dict) -> LabelSummary:
        """A job that found ``output`` already written (``metadata``: the file's) and did nothing."""
        return cls(output, units_skipped=n_units, units_total=n_units,
                   output_rows=metadata["rows"], output_flagged=metadata["flagged_rows"],
                   output_no_g=metadata.get("no_g_rows"))

    def add_merge(self, merged: LabelSummary) -> None:
        """Take the output file, its counts and the merge seconds of :func:`merge`'s summary."""
        self.output, self.output_rows, self.output_flagged = merged.output, merged.output_rows, merged.output_flagged
        self.output_no_g = merged.output_no_g
        self.timings["merge"] = merged.wall_s

    @property
    def stars_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s > 0 else 0.0

    def __str__(self) -> str:
        where = (f"-> {self.output} ({self.output_rows:,} rows, {self.output_flagged:,} flagged)"
                 if self.output else "(shard: run lamfast label --merge OUT when all shards are done)")
        stages = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items())
        return self._counts(where, stages) + self._photometry_lines()

    def _counts(self, where: str, stages: str) -> str:
        return (f"labelled {self.rows:,} stars ({self.flagged:,} flagged: no usable input) in "
                f"{self.units_done} units ({self.units_skipped} already done, {self.units_total} in "
                f"the plan) in {self.wall_s:.2f} s = {self.stars_per_s:,.0f} stars/s {where}\n"
                f"  stage seconds (read/tokenize overlap the model): {stages}")

    def _photometry_lines(self) -> str:
        lines = [f"\n  photometry joined: {n:,} stars from {Path(p).name}"
                 for p, n in zip(self.photometry, self.photometry_joined)]
        if self.no_g:
            lines.append(f"\n  {self.no_g:,} stars have no G (phot_g_mean_mag) in the photometry or the XP "
                         "file: their XP coefficients cannot be gnormed and count as missing (they are "
                         "labelled from their other inputs, or flagged no_input if none; column no_g)")
        return "".join(lines)
