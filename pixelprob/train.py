"""One trainer for every model with ``calc_likelihood(x)`` (bits per dimension) and ``sample(n)``.

The loss is the model's own ``calc_likelihood``: exact negative log-likelihood
in bits per dimension for the PixelCNN, the negative ELBO for the VAE.

Checkpoints (``best.pt``, ``last.pt``) are plain dicts of tensors and numbers,
loadable with ``torch.load(path, weights_only=True)``. ``last.pt`` is written
every ``save_every`` steps with optimiser, schedule and random state, and the
position inside the epoch, so a run killed mid-epoch resumes where it was and
continues the same run.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import build_model, checkpoint_dict


def _batches(n, batch_size, seed, epoch):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
    return [perm[i: i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def evaluate_bpd(model, data, batch_size=500):
    """Mean ``calc_likelihood`` over ``data`` (weighted by batch size)."""
    was = model.training
    model.eval()
    total = 0.0
    device = next(model.parameters()).device
    for i in range(0, len(data), batch_size):
        xb = data[i: i + batch_size].to(device)
        total += float(model.calc_likelihood(xb)) * len(xb)
    model.train(was)
    return total / len(data)


def train(model, train_data, val_data, out, epochs=10, batch_size=64, lr=1e-3, lr_decay=0.5,
          decay_every=None, clip=1.0, seed=0, resume=True, save_every=200, max_steps=None,
          max_minutes=None, tensorboard=True, sample_grid=16, progress=True, meta=None):
    """Train ``model`` by Adam on ``calc_likelihood`` and keep the best checkpoint.

    * schedule: the learning rate is multiplied by ``lr_decay`` every
      ``decay_every`` epochs (default: never, when ``None``), stepped per epoch;
    * ``clip``: gradient-norm clipping (``None`` to disable);
    * ``resume``: continue from ``out/last.pt`` when it exists;
    * ``max_steps`` / ``max_minutes``: stop early (state is saved, so a later
      call resumes), used for tests and for time-boxed runs.

    Returns a dict with the per-epoch validation bpd history and the paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=decay_every or 10 ** 9, gamma=lr_decay)
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_val": math.inf,
             "history": [], "wall": 0.0}
    last = out / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, weights_only=True)
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"])
        state.update(ck["train_state"])
    writer = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tb"))

    def save(path, extra=None):
        ck = checkpoint_dict(model, meta=dict(meta or {}, **(extra or {})))
        ck.update(optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=torch.get_rng_state(),
                  train_state=dict(state))
        tmp = path.with_suffix(".tmp")
        torch.save(ck, tmp)
        tmp.replace(path)  # atomic: a kill never leaves a half-written checkpoint

    t0 = time.time() - state["wall"]
    stopped = None
    model.train()
    while state["epoch"] < epochs and stopped is None:
        batches = _batches(len(train_data), batch_size, seed, state["epoch"])
        bar = tqdm(batches, desc=f"epoch {state['epoch'] + 1}/{epochs}", disable=not progress,
                   initial=state["step_in_epoch"], total=len(batches))
        for i in range(state["step_in_epoch"], len(batches)):
            xb = train_data[batches[i]].to(device)
            loss = model.calc_likelihood(xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            state["step_in_epoch"] = i + 1
            state["global_step"] += 1
            bar.update(1)
            bar.set_postfix(bpd=f"{loss.detach().item():.4f}")
            if writer is not None and state["global_step"] % 20 == 0:
                writer.add_scalar("bpd/train", loss.detach().item(), state["global_step"])
            state["wall"] = time.time() - t0
            if max_steps is not None and state["global_step"] >= max_steps:
                stopped = "max_steps"
            elif max_minutes is not None and state["wall"] > 60 * max_minutes:
                stopped = "max_minutes"
            if stopped or state["global_step"] % save_every == 0:
                save(last)
            if stopped:
                break
        bar.close()
        if stopped:
            break
        val = evaluate_bpd(model, val_data)
        sched.step()
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        state["history"].append(val)
        state["wall"] = time.time() - t0
        if writer is not None:
            writer.add_scalar("bpd/val", val, state["epoch"])
            if sample_grid:
                from torchvision.utils import make_grid
                model.eval()
                s = model.sample(sample_grid).float() / (model.levels - 1)
                model.train()
                writer.add_image("samples", make_grid(s.cpu(), nrow=int(math.sqrt(sample_grid))), state["epoch"])
        if progress:
            tqdm.write(f"epoch {state['epoch']}: validation bpd {val:.4f} ({state['wall'] / 60:.1f} min)")
        if val < state["best_val"]:
            state["best_val"] = val
            save(out / "best.pt", {"val_bpd": val, "epochs": state["epoch"], "wall_seconds": state["wall"]})
        save(last)
    if writer is not None:
        writer.close()
    model.eval()
    return {"history": list(state["history"]), "best_val": state["best_val"], "stopped": stopped,
            "best": out / "best.pt", "last": last, "wall_seconds": state["wall"]}
