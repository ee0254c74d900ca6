"""Running the proxies on one network: the passes each wanted proxy belongs to, once each.

:func:`compute_all` groups the wanted proxies by pass, gives every pass a fresh network
(:func:`~eznas_store.collect.proxies.networks.fresh_network`) and turns failures into
``(nan, reason)``; :func:`compute_proxy` is one proxy's value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch

from eznas_store.collect.proxies.networks import ModelSource, fresh_network
from eznas_store.collect.proxies.passes import PassResult
from eznas_store.collect.proxies.registry import PROXIES, ProxySpec, check_proxy_names
from eznas_store.errors import ConfigError, EznasError

__all__ = ["compute_all", "compute_proxy"]

Scores = dict[str, tuple[float, "str | None"]]


def _batch_on(images: torch.Tensor, labels: torch.Tensor | None,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch checked and moved to ``device`` (labels as int64)."""
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        raise ConfigError("images must be a batch tensor (B, C, H, W)")
    images = images.to(device)
    if labels is not None:
        labels = torch.as_tensor(labels).to(device=device, dtype=torch.long)
        if labels.shape[0] != images.shape[0]:
            raise ConfigError(f"{labels.shape[0]} labels for {images.shape[0]} images")
    return images, labels


def _group_by_pass(wanted: list[str], has_labels: bool,
                   result: Scores) -> dict[str, list[ProxySpec]]:
    """The wanted proxies per pass name; those that need absent labels go to ``result``."""
    by_pass: dict[str, list[ProxySpec]] = {}
    for n in wanted:
        if PROXIES[n].needs_labels and not has_labels:
            result[n] = (math.nan, f"{n} needs labels (it uses the cross-entropy loss or "
                                   "groups images by class); none were given")
        else:
            by_pass.setdefault(PROXIES[n].group, []).append(PROXIES[n])
    return by_pass


def _run_pass(specs: list[ProxySpec], source: ModelSource, images: torch.Tensor,
              labels: torch.Tensor | None, *, seed: int, device: torch.device,
              reinit: bool) -> PassResult:
    """One pass on a fresh network; an error inside the network fails the pass's proxies."""
    try:
        model = fresh_network(source, seed=seed, device=device, reinit=reinit)
        return specs[0].proxy_pass.run(model, images, labels, seed=seed, specs=specs)
    except EznasError:  # a bad argument or architecture is the caller's to fix
        raise
    except Exception as exc:
        return PassResult(reasons={s.name: f"{s.name} failed: {type(exc).__name__}: {exc}"
                                   for s in specs})


def _score(name: str, out: PassResult) -> tuple[float, str | None]:
    """``(value, None)`` for a finite value, else ``(nan, reason)``."""
    if name in out.values and math.isfinite(out.values[name]):
        return out.values[name], None
    if name in out.values:
        return math.nan, f"{name} is {out.values[name]} for this network"
    return math.nan, out.reasons.get(name, f"{name} gave no value")


def compute_all(
    model_factory: ModelSource,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    seed: int,
    names: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
    reinit: bool = True,
    timings: dict[str, float] | None = None,
) -> dict[str, tuple[float, str | None]]:
    """Compute proxies for one network: ``{name: (value, None) or (nan, reason)}``.

    ``model_factory``: ``seed -> nn.Module``, called once per pass (each pass gets a fresh
    network with the same init), e.g. :func:`~eznas_store.collect.proxies.networks.network_factory`;
    or an ``nn.Module``, deep-copied per pass and, unless ``reinit=False``, re-initialised
    with EZNAS's init (:func:`eznas_store.collect.statistics.reinitialise`) from ``seed``.
    ``images, labels``: one batch (NASLib: 64 training images of the task), normalised as
    the benchmark trained; ``labels`` (int64) are needed by epe_nas, fisher, grad_norm,
    grasp, plain and snip — without them those get ``(nan, "needs labels ...")``.
    ``seed``: init seed and zen's noise seed. ``timings``: if given, filled with wall
    seconds per pass (``static``, ``main``, ``synflow``, ``zen``).

    A proxy that fails for a network (NaN/Inf, singular matrix, an error inside the
    network) gets ``(nan, reason)``; only an unknown name or a bad argument raises.
    """
    wanted = check_proxy_names(names)
    device = torch.device(device)
    images, labels = _batch_on(images, labels, device)
    result: Scores = {}
    for pass_name, specs in _group_by_pass(wanted, labels is not None, result).items():
        t0 = time.perf_counter()
        try:
            out = _run_pass(specs, model_factory, images, labels, seed=seed, device=device,
                            reinit=reinit)
        finally:
            if timings is not None:
                timings[pass_name] = timings.get(pass_name, 0.0) + time.perf_counter() - t0
        for spec in specs:
            result[spec.name] = _score(spec.name, out)
    return {n: result[n] for n in wanted}


def compute_proxy(
    name: str,
    model_factory_or_model: ModelSource,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    reinit: bool = True,
) -> float:
    """One proxy's value for one network (NaN when it fails; see :func:`compute_all`).

    Raises :class:`~eznas_store.errors.ConfigError` when the proxy needs labels and
    ``labels`` is None, :class:`~eznas_store.errors.UnknownNameError` for an unknown name.
    """
    check_proxy_names([name])
    if PROXIES[name].needs_labels and labels is None:
        raise ConfigError(f"proxy {name!r} needs labels (pass the batch's labels)")
    value, _ = compute_all(model_factory_or_model, images, labels, seed=seed, names=[name],
                           device=device, reinit=reinit)[name]
    return value
