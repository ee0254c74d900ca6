"""The training loop behind ``label``: NB201's recipe, minus data augmentation.

SGD with Nesterov momentum, a cosine learning-rate schedule stepped every batch down to 0
over ``epochs`` epochs, cross-entropy, the train split shuffled every epoch; then
BatchNorm statistics recomputed exactly over the train split ("precise BN", as pycls
does) and top-1 accuracy (%) on the test split in eval mode. Everything random comes
from the seeds given, never from the caller's global random state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["train_network"]

#: batch size for evaluation (no gradients, so larger is fine)
_EVAL_BATCH = 512


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for lo in range(0, len(x), _EVAL_BATCH):
            logits = model(x[lo : lo + _EVAL_BATCH])
            correct += int((logits.argmax(1) == y[lo : lo + _EVAL_BATCH]).sum())
    return 100.0 * correct / max(len(x), 1)


def _train_epoch(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], *,
                 optimizer: torch.optim.Optimizer, scheduler: object,
                 generator: torch.Generator, batch_size: int,
                 device: torch.device) -> tuple[float, float, float]:
    """One shuffled epoch; returns (summed loss, correct, seen) over its batches."""
    x_train, y_train = train
    n = len(x_train)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    order = torch.randperm(n, generator=generator).to(device)
    loss_sum = correct = seen = 0.0
    for lo in range(0, n, batch_size):
        rows = order[lo : lo + batch_size]
        if len(rows) < 2:
            continue
        xb, yb = x_train[rows], y_train[rows]
        logits = model(xb)
        loss = loss_fn(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += float(loss.detach()) * len(rows)
        correct += float((logits.detach().argmax(1) == yb).sum())
        seen += len(rows)
    return loss_sum, correct, seen


def train_network(
    build: Callable[[], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    init_seed: int,
    data_seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    device: torch.device,
) -> tuple[float, float, float]:
    """Train ``build()`` and return (test top-1 %, last-epoch train top-1 %, last-epoch loss).

    The model is built under ``torch.manual_seed(init_seed)`` inside ``fork_rng``, so the
    caller's global random state is untouched; batches are drawn with a
    ``torch.Generator`` seeded with ``data_seed``. A final batch of one sample is dropped
    (BatchNorm cannot train on it).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = build()
    model = model.to(device)
    n = len(train[0])
    steps_per_epoch = sum(1 for lo in range(0, n, batch_size) if n - lo >= 2)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epochs * steps_per_epoch, 1), eta_min=0.0
    )
    generator = torch.Generator().manual_seed(data_seed)
    loss_sum = correct = seen = 0.0
    for _ in range(epochs):
        loss_sum, correct, seen = _train_epoch(model, train, optimizer=optimizer,
                                               scheduler=scheduler, generator=generator,
                                               batch_size=batch_size, device=device)
    train_acc = 100.0 * correct / seen if seen else math.nan
    train_loss = loss_sum / seen if seen else math.nan
    _precise_bn(model, train[0], batch_size=batch_size)
    return _accuracy(model, *test), train_acc, train_loss


def _precise_bn(model: nn.Module, x: torch.Tensor, *, batch_size: int) -> None:
    """Recompute BatchNorm running statistics as exact averages over ``x`` (pycls' precise BN).

    The running averages left by training trail the final weights; after a few epochs
    that lag, not the architecture, decides much of the test accuracy. One forward pass
    in train mode with ``momentum=None`` (cumulative average) over the training images,
    in training-sized batches, replaces them with the statistics of the final weights.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            if len(x) - lo >= 2:
                model(x[lo : lo + batch_size])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum

