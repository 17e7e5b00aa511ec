"""QueryResult: what every inference method returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch


@dataclass
class QueryResult:
    """The answer to a query, with its uncertainty and cost.

    Array fields keep a leading batch dimension ``B`` (one entry per evidence
    image) and a target dimension ``T`` (target pixels in raster order):

    * ``probs_full``: ``B x T x levels``, per-pixel marginals of the target;
    * ``stderr_full``: same shape, Monte Carlo standard errors (``None`` when exact);
    * ``samples_full``: ``B x S x T``, joint samples of the target (or ``None``).

    The properties ``probs``, ``stderr`` and ``samples`` drop the batch
    dimension for unbatched evidence and the target dimension for a one-pixel
    target, so a one-pixel question on one image gives a vector of ``levels``
    probabilities.
    """

    probs_full: torch.Tensor
    method: str
    exact: bool
    target_mask: torch.Tensor
    images: torch.Tensor  # B x C x H x W, evidence images (hidden pixels arbitrary)
    observed_mask: torch.Tensor
    stderr_full: Optional[torch.Tensor] = None
    samples_full: Optional[torch.Tensor] = None
    num_model_evals: int = 0
    elapsed: float = 0.0
    batched: bool = False
    inference_data: Any = None
    diagnostics: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    seed: Optional[int] = None

    def _squeeze(self, t, sample_dim=False):
        if t is None:
            return None
        if not self.batched:
            t = t[0]
        if self.num_target == 1:
            t = t.squeeze(-1) if sample_dim else t.squeeze(-2)
        return t

    @property
    def num_target(self):
        return int(self.target_mask.sum())

    @property
    def levels(self):
        return self.probs_full.shape[-1]

    @property
    def probs(self):
        return self._squeeze(self.probs_full)

    @property
    def stderr(self):
        return self._squeeze(self.stderr_full)

    @property
    def samples(self):
        return self._squeeze(self.samples_full, sample_dim=True)

    def mean(self):
        """Posterior mean level of each target pixel (``B x T``, squeezed like ``probs``)."""
        lv = torch.arange(self.levels, dtype=self.probs_full.dtype, device=self.probs_full.device)
        m = (self.probs_full * lv).sum(-1)
        if not self.batched:
            m = m[0]
        return m.squeeze(-1) if self.num_target == 1 else m

    def sample_images(self):
        """Joint samples as whole images ``B x S x C x H x W``: evidence pixels plus sampled target."""
        if self.samples_full is None:
            raise ValueError(f"method {self.method!r} returned no samples for this query")
        B, S, _ = self.samples_full.shape
        x = self.images.unsqueeze(1).expand(B, S, *self.images.shape[1:]).clone()
        x = torch.where(self.observed_mask, x, torch.zeros_like(x))
        x[:, :, self.target_mask] = self.samples_full.to(x.dtype)
        return x

    def summary(self) -> str:
        """A few lines: method, cost, answer and diagnostics."""
        lines = [f"method={self.method} exact={self.exact} evals={self.num_model_evals} "
                 f"elapsed={self.elapsed:.2f}s target_pixels={self.num_target} batch={self.probs_full.shape[0]}"]
        for b in range(self.probs_full.shape[0]):
            p = self.probs_full[b, 0]
            top = torch.topk(p, min(3, p.numel()))
            tops = ", ".join(f"{int(i)}:{float(v):.3f}" for v, i in zip(top.values, top.indices))
            se = "" if self.stderr_full is None else f" max stderr {float(self.stderr_full[b, 0].max()):.4f}"
            lines.append(f"  [{b}] first target pixel: mean level {float((p * torch.arange(p.numel())).sum()):.1f}; "
                         f"top {tops}{se}")
        for k, v in self.diagnostics.items():
            if isinstance(v, (int, float, str)):
                lines.append(f"  {k}: {v}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def plot(self, path=None, **kw):
        """Bar chart of a one-pixel answer (with error bars) or an image grid of samples."""
        from .plots import plot_result
        return plot_result(self, path, **kw)

    def to_dict(self):
        """JSON-ready summary (lists of floats)."""
        d = {"method": self.method, "exact": self.exact, "num_model_evals": self.num_model_evals,
             "elapsed": self.elapsed, "probs": self.probs.tolist(),
             "stderr": None if self.stderr is None else self.stderr.tolist(),
             "notes": list(self.notes)}
        d["diagnostics"] = {k: v for k, v in self.diagnostics.items() if isinstance(v, (int, float, str, bool))}
        return d
