"""The 13 hand-crafted zero-cost proxies of NAS-Bench-Suite-Zero, as NASLib computes them.

NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS 2022 Datasets & Benchmarks) published
13 proxies for every cell of several spaces, computed with NASLib
(``naslib/predictors/pruners/measures/*.py`` and ``predictors/zerocost.py``). This module
computes the same 13 numbers for any PyTorch model whose ``forward`` returns logits, so
that an evolved EZNAS program can be shown next to them on the same networks.

NASLib conventions kept here (every proxy's docstring says which apply):

- the network runs in **train mode** (BatchNorm uses batch statistics), one batch
  (``split_data=1``), loss ``F.cross_entropy`` on the batch labels;
- "per-layer" means every ``nn.Conv2d`` and ``nn.Linear`` (stem, shortcut convs and the
  classifier included), and a per-weight array is summed over all entries of all layers
  (``find_measures``'s ``sum_arr``); ``fisher`` is per channel and NASLib broadcasts each
  channel's value to the channel's ``C_in·k·k`` weights before summing, kept here;
- ``synflow`` is reported as ``log`` of the sum (``ZeroCost.query`` does this; a zero sum
  stays 0), ``params``/``flops`` in millions as tensorwatch counts them at batch 1.

Where NASLib writes ``-1e8`` for a NaN/Inf score we return ``(nan, reason)``
(DESIGN: a failed proxy is NaN plus a reason, never a magic number).

Every proxy gets a freshly built, freshly initialised network (all with the same init).
Proxies that do not change the network share one fresh copy and one forward pass: NASLib
would give each its own copy with the same weights, the same batch and hence the same
batch statistics, so the values are the same (``tests/test_proxies.py`` checks each
proxy alone against its value in the shared pass and against independent references):

======= ================================================ ==================================
pass    proxies                                          work
======= ================================================ ==================================
static  l2_norm, params, flops                           one batch-1 forward (eval mode)
main    nwot, jacov, epe_nas, fisher, grad_norm, plain,  one forward; backward to the input;
        snip, grasp                                      CE backward (create_graph); H·g
synflow synflow                                          batch-1 float64 pass, |θ|, no BN
zen     zen                                              Gaussian re-init, 2 forwards
======= ================================================ ==================================

Cost, all 13 proxies, one NB201 network (C=16, N=5, 32 px), one CPU thread, measured on
a shared 2-core machine: ≈1.0 CPU-s (1.5 s wall) at batch 16, ≈3.5 CPU-s (5 s wall) at
batch 64, NASLib's batch. The main pass is ~80 % of it and GraSP's H·g double backward
alone about half (batch 64: forward 0.30 s, input backward 0.24 s, CE backward 0.39 s,
H·g 1.8 s); zen's two forwards ~15 %. On a busy machine prefer
``torch.set_num_threads(1)``: two OpenMP threads that compete with other processes made
the same work 5-10x slower there.

Example
-------
>>> from eznas_store.collect.proxies import compute_all, nb201_factory       # doctest: +SKIP
>>> factory = nb201_factory("|nor_conv_3x3~0|+|skip_connect~0|none~1|+"
...                         "|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|")
>>> scores = compute_all(factory, batch.images, batch.labels, seed=0)
>>> scores["synflow"]        # (value, None) or (nan, "why")

Relation to the EZNAS terminals
-------------------------------
The 22 EZNAS terminals hold, per R-C-B block, the conv weight (``wt``), gradients of the
*sum of the logits* (not of a loss), block activations and their gradients, for data,
noise and perturbed inputs. Only proxies that read weights, shapes or ReLU patterns can be
rebuilt from them, and only **restricted to the blocks** (the stem conv, NB201's two
shortcut convs, the classifier and the final BN-ReLU are not blocks):
:func:`from_terminals` computes those block-restricted variants (``l2_norm``, ``nwot``,
``params``, ``flops``) and :func:`block_variant` computes the same variants straight from
a network; they are different numbers from the full proxies of the same name.
"""

from __future__ import annotations

import copy
import math
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eznas_store.collect.statistics import find_blocks, reinitialise
from eznas_store.errors import ConfigError, EznasError, UnknownNameError

__all__ = [
    "BLOCK_PROXIES",
    "PROXIES",
    "PROXY_NAMES",
    "ProxySpec",
    "block_variant",
    "compute_all",
    "compute_proxy",
    "from_terminals",
    "nb201_factory",
    "nwot_logdet",
    "synflow_sum",
]

#: a model, or a factory ``seed -> freshly built and initialised model``
ModelSource = nn.Module | Callable[[int], nn.Module]

#: NASLib's constants
_JACOV_K = 1e-5
_EPE_K = 1e-5
_ZEN_MIXUP_GAMMA = 1e-2


# ============================================================================ helpers
def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    """NASLib's per-layer unit (``get_layer_metric_array``): every Conv2d and Linear."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _is_relu(module: nn.Module) -> bool:
    """A torch.nn ReLU-family module (NASLib's nwot hooks ``'ReLU' in str(type(m))`` minus
    its own composite ops such as ``ReLUConvBN``; a user class named ``*ReLU*`` that is
    not from torch.nn is a composite too and is skipped)."""
    t = type(module)
    return "ReLU" in t.__name__ and t.__module__.startswith("torch.nn")


def _fsum(values: Iterable[torch.Tensor | float]) -> float:
    """Sum tensors' entries (or floats) in float64."""
    total = 0.0
    for v in values:
        total += float(v.double().sum()) if isinstance(v, torch.Tensor) else float(v)
    return total


def _fresh(source: ModelSource, *, seed: int, device: torch.device, reinit: bool) -> nn.Module:
    """A new model for one pass: ``factory(seed)``, or a deep copy (re-initialised)."""
    if isinstance(source, nn.Module):
        model = copy.deepcopy(source)
        if reinit:
            reinitialise(model, torch.Generator().manual_seed(int(seed)))
    elif callable(source):
        model = source(int(seed))
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"a model factory must return a torch.nn.Module, got {type(model).__name__}"
            )
    else:
        raise ConfigError(
            f"expected a torch model or a factory seed -> model, got {type(source).__name__}"
        )
    model = model.to(device).train()
    model.zero_grad(set_to_none=True)
    return model


def nb201_factory(arch: str, *, num_classes: int = 10, C: int = 16, N: int = 5,
                  init: str = "eznas") -> Callable[[int], nn.Module]:
    """A factory ``seed -> NB201 network`` for :func:`compute_all`.

    ``init="eznas"``: :func:`eznas_store.collect.statistics.reinitialise` with
    ``torch.Generator().manual_seed(seed)`` (the init the EZNAS statistics use).
    ``init="default"``: PyTorch's default module init drawn from the global RNG seeded
    with ``seed`` inside ``torch.random.fork_rng`` (what NASLib, hence Suite-Zero, used:
    it never re-initialises a freshly built network; e.g. ``l2_norm`` reproduces
    Suite-Zero's scale only with it). Both are deterministic in ``seed``.
    """
    from eznas_store.sources.spaces import nb201

    if init not in ("eznas", "default"):
        raise ConfigError(f"init must be 'eznas' or 'default', not {init!r}")
    cell = nb201.parse_cell(arch)

    def factory(seed: int) -> nn.Module:
        if init == "default":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                return nb201.build(cell, num_classes=num_classes, C=C, N=N)
        model = nb201.build(cell, num_classes=num_classes, C=C, N=N)
        reinitialise(model, torch.Generator().manual_seed(int(seed)))
        return model

    return factory


# ============================================================================ results
@dataclass
class _Out:
    """A pass's results: value per name, or a reason why there is none."""

    values: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, fn: Callable[[], float]) -> None:
        try:
            with np.errstate(all="ignore"):
                self.values[name] = float(fn())
        except Exception as exc:  # a failed proxy is NaN plus a reason, never a crash
            self.reasons[name] = f"{name} failed: {type(exc).__name__}: {exc}".strip()


# ============================================================================ static pass
def _tw_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> float:
    """FLOPs of one leaf-module call with tensorwatch's ``compute_flops`` formulas."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_pos = kh * kw * inp.shape[1] * (out.shape[1] // module.groups)
        active = out.shape[0] * out.shape[2] * out.shape[3]
        bias = out.shape[1] * active if module.bias is not None else 0
        return float(per_pos * active + bias)
    if isinstance(module, nn.BatchNorm2d):
        return float(inp.numel() * (2 if module.affine else 1))
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        ks = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
        st = module.stride if isinstance(module.stride, tuple) else (module.stride,) * 2
        pd = module.padding if isinstance(module.padding, tuple) else (module.padding,) * 2
        ow = math.floor((inp.shape[3] + 2 * pd[0] - ks[0]) / float(st[0]) + 1)
        oh = math.floor((inp.shape[2] + 2 * pd[1] - ks[1]) / float(st[0]) + 1)
        return float(inp.shape[0] * inp.shape[1] * ow * oh * ks[0] * ks[1])
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        h, w = inp.shape[2], inp.shape[3]
        oh, ow = out.shape[2], out.shape[3]
        total = 0
        for i in range(oh):
            y0, y1 = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
            for j in range(ow):
                x0, x1 = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
                total += inp.shape[0] * inp.shape[1] * (y1 - y0 + 1) * (x1 - x0 + 1)
        return float(total)
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)):
        return float(inp.numel())
    if isinstance(module, nn.Upsample):
        return float(out.numel())
    if isinstance(module, nn.Linear):
        rows = inp.numel() // inp.shape[-1]
        return float(rows * module.in_features * module.out_features)  # no bias term
    return 0.0


def _count_static(model: nn.Module, input_shape: Sequence[int]) -> tuple[float, float]:
    """(params, flops) as tensorwatch's ``ModelStats`` counts them (batch-1 forward, eval).

    Params: the parameters registered directly on every *leaf* module that runs in the
    forward pass. FLOPs: :func:`_tw_flops` per call (tensorwatch keeps only a module's
    last call; the two agree unless a module is called twice in one forward).
    """
    seen: set[int] = set()
    params = 0
    flops = 0.0

    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        nonlocal params, flops
        if id(module) not in seen:
            seen.add(id(module))
            params += sum(p.numel() for p in module._parameters.values() if p is not None)
        inp = args[0] if args and isinstance(args[0], torch.Tensor) else None
        o = out[0] if isinstance(out, (tuple, list)) else out
        if inp is not None and isinstance(o, torch.Tensor):
            flops += _tw_flops(module, inp, o)

    leaves = [m for m in model.modules() if len(list(m.children())) == 0]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        p = next(model.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32
        device = p.device if p is not None else torch.device("cpu")
        x = torch.zeros((1, *input_shape), dtype=dtype, device=device)
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return params / 1e6, flops / 1e6


def _pass_static(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                 *, seed: int, names: Sequence[str]) -> _Out:
    out = _Out()
    if "l2_norm" in names:
        out.put("l2_norm", lambda: _fsum(l.weight.detach().norm() for l in _weighted_layers(model)))
    if "params" in names or "flops" in names:
        try:
            params, flops = _count_static(model, images.shape[1:])
        except Exception as exc:
            for n in ("params", "flops"):
                if n in names:
                    out.reasons[n] = f"{n} failed: {type(exc).__name__}: {exc}"
        else:
            if "params" in names:
                out.values["params"] = params
            if "flops" in names:
                out.values["flops"] = flops
    return out


# ============================================================================ NWOT, jacov, EPE-NAS
def nwot_logdet(codes: Iterable[torch.Tensor | np.ndarray]) -> float:
    """NWOT's score from binary activation codes: ``log|det K|``.

    ``codes`` yields, per ReLU, a (B, ...) array of 0/1 (or bool) codes (unit active);
    ``K = Σ_layers c cᵀ + (1 − c)(1 − c)ᵀ`` counts, for each pair of images, the units on
    which they agree (units minus the Hamming distance). Returns ``slogdet(K)[1]`` (NASLib
    drops the sign); ``-inf`` when K is singular.
    """
    k = _Kernel()
    for c in codes:
        k.add(torch.as_tensor(np.asarray(c) if not isinstance(c, torch.Tensor) else c))
    if k.K is None:
        raise ValueError("nwot needs at least one ReLU layer")
    return float(np.linalg.slogdet(k.K.numpy())[1])


class _Kernel:
    """Accumulates the NWOT agreement kernel K (float64, on the CPU)."""

    def __init__(self) -> None:
        self.K: torch.Tensor | None = None

    @staticmethod
    def term(x: torch.Tensor) -> torch.Tensor:
        """c cᵀ + (1 − c)(1 − c)ᵀ for codes (B, ...), with one matmul, exactly."""
        b = x.shape[0]
        c = x.reshape(b, -1)
        n = c.shape[1]
        # 0/1 products are exact integers in float32 below 2**24 units, else use float64
        c = c.to(torch.float32 if n < 2**24 else torch.float64)
        gram = (c @ c.T).double()
        s = c.sum(1).double()
        # (1-c)(1-c)^T = n - s_i - s_j + c c^T
        return (2.0 * gram - s[:, None] - s[None, :] + float(n)).cpu()

    def add(self, x: torch.Tensor, term: torch.Tensor | None = None) -> torch.Tensor:
        t = self.term(x) if term is None else term
        self.K = t.clone() if self.K is None else self.K + t
        return t


def _jacov_score(jac: np.ndarray) -> float:
    """Mellor et al. (2020, v1) score of input Jacobians (B, D): −Σ log(λ+k) + 1/(λ+k)."""
    corrs = np.corrcoef(jac)
    if not np.all(np.isfinite(corrs)):
        raise FloatingPointError("the Jacobian correlation matrix is not finite "
                                 "(an input gradient is constant)")
    v = np.linalg.eigvalsh((corrs + corrs.T) / 2)
    return float(-np.sum(np.log(v + _JACOV_K) + 1.0 / (v + _JACOV_K)))


def _epe_score(jac: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """EPE-NAS (Lopes et al. 2021) as NASLib/the authors' code computes it."""
    per_class: dict[int, np.ndarray] = {}
    for i, label in enumerate(labels.tolist()):
        per_class[label] = jac[i] if label not in per_class else np.vstack((per_class[label], jac[i]))
    class_score: dict[int, float] = {}
    for c, rows in per_class.items():
        corrs = np.corrcoef(rows)
        s = float(np.sum(np.log(np.abs(corrs) + _EPE_K)))
        if n_classes > 100:
            if np.ndim(corrs) == 0:  # one sample: NASLib's len() raises and skips the class
                continue
            s /= len(corrs)
        class_score[c] = s
    if n_classes <= 100:
        return float(sum(abs(s) for s in class_score.values()))
    keys = list(class_score)
    total = sum(abs(class_score[a] - class_score[b]) for a in keys for b in keys)
    return float(total / len(keys))


# ============================================================================ main pass
def _pass_main(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
               *, seed: int, names: Sequence[str]) -> _Out:
    """One forward on the batch (train mode), then up to three backward passes through it.

    1. ``∂(Σ logits)/∂x`` (``logits.backward(ones)`` to the input): jacov, epe_nas;
    2. ``g = ∂L/∂θ`` for L = ``F.cross_entropy`` and every Conv2d/Linear weight θ, with
       hooks on the layers' outputs for fisher: fisher, grad_norm, plain, snip;
    3. ``∂(g_const · g)/∂θ = H g`` (``create_graph`` in step 2): grasp.

    ReLU pre-hooks in the forward give nwot. NASLib runs each proxy on its own copy of
    the network with its own forward; the copies would hold the same weights and see the
    same batch with the same batch statistics, so one forward gives the same values.
    NASLib's GraSP runs a separate no-graph forward/backward for g; the ``create_graph``
    gradient has the same value.
    """
    want = set(names)
    need_jac = bool(want & {"jacov", "epe_nas"})
    need_loss = bool(want & {"fisher", "grad_norm", "plain", "snip", "grasp"})
    layers = _weighted_layers(model)
    weights = [l.weight for l in layers]
    if not need_loss:  # only the input gradient (or nothing) is needed
        for p in model.parameters():
            p.requires_grad_(False)
    handles = []
    kernel = _Kernel()
    if "nwot" in want:
        # edges that leave the same NB201 node share one input tensor: reuse its K term
        cache: dict[int, tuple[torch.Tensor, int, torch.Tensor]] = {}

        def relu_pre_hook(module, args):
            # a pre-hook reads the input before an in-place ReLU overwrites it
            x = args[0]
            hit = cache.get(id(x))
            if hit is not None and hit[0] is x and hit[1] == x._version:
                kernel.add(x, hit[2])
                return
            cache[id(x)] = (x, x._version, kernel.add(x.detach() > 0))

        handles += [m.register_forward_pre_hook(relu_pre_hook) for m in model.modules() if _is_relu(m)]
    fisher: dict[int, torch.Tensor] = {}
    fisher_on = [False]  # only the cross-entropy backward feeds fisher
    if "fisher" in want:
        def make_hook(key: int):
            def fwd(module, args, output):
                if not (isinstance(output, torch.Tensor) and output.requires_grad):
                    return
                act = output.detach()

                def grad_hook(grad: torch.Tensor) -> None:
                    if not fisher_on[0]:
                        return
                    g = grad.detach()
                    g_nk = (act * g).sum(dim=tuple(range(2, act.dim()))) if act.dim() > 2 else act * g
                    del_k = g_nk.pow(2).mean(0).mul(0.5)
                    fisher[key] = del_k if key not in fisher else fisher[key] + del_k

                output.register_hook(grad_hook)
            return fwd

        for i, layer in enumerate(layers):
            if not hasattr(layer, "dont_ch_prune"):  # NASLib's 'channel' mode skips these
                handles.append(layer.register_forward_hook(make_hook(i)))
    x = images.detach().clone().requires_grad_(need_jac)
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    out = _Out()
    if "nwot" in want:
        def nwot() -> float:
            if kernel.K is None:
                raise ValueError("the model has no torch.nn ReLU module")
            return float(np.linalg.slogdet(kernel.K.numpy())[1])
        out.put("nwot", nwot)
    if need_jac:
        def jacobian() -> np.ndarray:
            (jx,) = torch.autograd.grad(logits, x, torch.ones_like(logits), retain_graph=need_loss)
            return jx.detach().reshape(x.shape[0], -1).cpu().double().numpy()
        try:
            jac = jacobian()
        except Exception as exc:
            for n in ("jacov", "epe_nas"):
                out.reasons[n] = f"{n} failed: {type(exc).__name__}: {exc}"
        else:
            if "jacov" in want:
                out.put("jacov", lambda: _jacov_score(jac))
            if "epe_nas" in want:
                lab = labels.detach().cpu().numpy()
                out.put("epe_nas", lambda: _epe_score(jac, lab, int(logits.shape[-1])))
    if not need_loss:
        return out
    loss_names = [n for n in ("fisher", "grad_norm", "plain", "snip", "grasp") if n in want]
    try:
        loss = F.cross_entropy(logits, labels)
        fisher_on[0] = True
        grads = torch.autograd.grad(loss, weights, create_graph="grasp" in want, allow_unused=True)
    except Exception as exc:
        for n in loss_names:
            out.reasons[n] = f"{n} failed: {type(exc).__name__}: {exc}"
        return out
    finally:
        fisher_on[0] = False
    pairs = [(w.detach(), g.detach()) for w, g in zip(weights, grads) if g is not None]  # None: zeros
    if "grad_norm" in want:
        out.put("grad_norm", lambda: _fsum(g.norm() for _, g in pairs))
    if "plain" in want:
        out.put("plain", lambda: _fsum(w * g for w, g in pairs))
    if "snip" in want:
        out.put("snip", lambda: _fsum((w * g).abs() for w, g in pairs))
    if "fisher" in want:
        def fisher_value() -> float:
            total = 0.0
            for i, layer in enumerate(layers):
                if i in fisher:  # Δ_k broadcast to the channel's C_in·k·k weights, summed
                    total += float(fisher[i].abs().double().sum()) * int(np.prod(layer.weight.shape[1:]))
            return total
        out.put("fisher", fisher_value)
    if "grasp" in want:
        def grasp() -> float:
            terms = [(g.detach() * g).sum() for g in grads if g is not None]
            if not terms:
                raise ValueError("no Conv2d/Linear weight gets a gradient")
            for w in weights:
                w.grad = None
            torch.stack(terms).sum().backward()  # weight.grad = H g
            return _fsum(-w.detach() * w.grad for w in weights if w.grad is not None)
        out.put("grasp", grasp)
    return out


# ============================================================================ synflow pass
def _identity_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


def _synflow_total(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Σ over Conv2d/Linear weights of |θ ⊙ ∂R/∂θ| with R = Σ f(1; |θ|), BN removed, float64."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.forward = types.MethodType(_identity_forward, m)  # NASLib's bn=False copy
    model.double()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.abs_()
    model.zero_grad(set_to_none=True)
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    model(x).sum().backward()
    return _fsum((l.weight.detach() * l.weight.grad).abs()
                 for l in _weighted_layers(model) if l.weight.grad is not None)


def _pass_synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                  *, seed: int, names: Sequence[str]) -> _Out:
    out = _Out()

    def value() -> float:
        total = _synflow_total(model, images.shape[1:])
        if not math.isfinite(total):
            raise FloatingPointError(f"the synflow sum is {total} (float64 overflow)")
        return 0.0 if total == 0.0 else math.log(total)  # ZeroCost.query's log; 0 stays 0

    out.put("synflow", value)
    return out


# ============================================================================ zen pass
def _zen_init(model: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS's ``network_weight_gaussian_init``: Conv/Linear N(0, 1), norms 1/0, biases 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator,
                                           dtype=m.weight.dtype).to(m.weight.device))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                    m.bias.zero_()


def _pass_zen(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
              *, seed: int, names: Sequence[str]) -> _Out:
    """Zen-score (Lin et al. 2021) as NASLib: features before global pooling, train mode."""
    out = _Out()

    def value() -> float:
        pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        if len(pools) != 1:
            raise ValueError(f"zen reads the features entering the global average pooling and "
                             f"needs exactly one nn.AdaptiveAvgPool2d; this model has {len(pools)}")
        gen = torch.Generator().manual_seed(int(seed))
        _zen_init(model, gen)
        for m in model.modules():  # a fresh NASLib network: running stats at their defaults
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.reset_running_stats()
        x1 = torch.randn(images.shape, generator=gen).to(images.device, images.dtype)
        x2 = torch.randn(images.shape, generator=gen).to(images.device, images.dtype)
        mixup = x1 + _ZEN_MIXUP_GAMMA * x2
        feats: list[torch.Tensor] = []
        h = pools[0].register_forward_pre_hook(lambda m, a: feats.append(a[0]))
        try:
            with torch.no_grad():
                model(x1)
                model(mixup)
        finally:
            h.remove()
        f1, f2 = feats
        nas = torch.sum(torch.abs(f1 - f2), dim=tuple(range(1, f1.dim()))).mean()
        log_bn = 0.0
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_var is not None:
                log_bn += float(torch.log(torch.sqrt(torch.mean(m.running_var))))
        return float(torch.log(nas)) + log_bn

    out.put("zen", value)
    return out


# ============================================================================ the table
_PASSES: dict[str, Callable[..., _Out]] = {
    "static": _pass_static,
    "main": _pass_main,
    "synflow": _pass_synflow,
    "zen": _pass_zen,
}


@dataclass(frozen=True)
class ProxySpec:
    """One proxy: its name, whether it reads labels, what it is, and how it is computed.

    ``fn(model, images, labels, *, seed) -> float`` computes the proxy on a model it may
    modify (give it a fresh one, in train mode); it raises when the proxy fails and may
    return a non-finite value (:func:`compute_all` turns both into ``(nan, reason)``).
    ``group`` names the pass it shares with other proxies.
    """

    name: str
    needs_labels: bool
    doc: str
    fn: Callable[..., float]
    group: str = ""


def _single(name: str, group: str) -> Callable[..., float]:
    def fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None, *,
           seed: int = 0) -> float:
        out = _PASSES[group](model, images, labels, seed=seed, names=(name,))
        if name in out.reasons:
            raise FloatingPointError(out.reasons[name])
        return out.values[name]
    fn.__name__ = name
    fn.__doc__ = _DOCS[name]
    return fn


_DOCS: dict[str, str] = {
    "epe_nas": """EPE-NAS (Lopes, Alexandre, Santos & Alexandre 2021, "EPE-NAS: Efficient Performance
    Estimation Without Training for Neural Architecture Search", ICANN 2021).

    Input Jacobians J = ∂(Σ logits)/∂x (train mode, labels only group the rows); per class
    c present in the batch, s_c = Σ log(|corrcoef(J_c)| + 1e-5); score = Σ_c |s_c| for ≤100
    classes (for >100: s_c /= n_c and score = Σ_c Σ_c' |s_c − s_c'| / #classes). A class
    with one sample adds log(1 + 1e-5), as NASLib's ``np.corrcoef`` of one row does.
    Terminals: no — needs the gradient w.r.t. the input image, not block tensors.""",
    "fisher": """Fisher (Theis et al. 2018 "Faster gaze prediction with dense networks and Fisher
    pruning"; Turner et al. 2020 "BlockSwap"), as a zero-cost proxy by Abdelfattah et al.
    2021 "Zero-Cost Proxies for Lightweight NAS" (ICLR).

    Per Conv2d/Linear output channel k: Δ_k = ½·mean_n (Σ_hw a ⊙ ∂L/∂a)², a = the layer's
    output (pre-BN), L = cross-entropy, train mode. NASLib ('channel' mode) broadcasts Δ_k to
    the channel's C_in·k_h·k_w weights, so the score is Σ_layers Σ_k |Δ_k|·C_in·k_h·k_w.
    Terminals: no — ``act`` is the BN output and the terminal gradients are of Σ logits.""",
    "flops": """FLOPs in millions, counted as NASLib's ``get_model_stats`` (tensorwatch
    ``ModelStats``) does: one batch-1 forward in eval mode; Conv2d k_h·k_w·C_in·C_out·H_o·W_o
    (+bias), BatchNorm2d 2·numel (1·numel without affine), ReLU-family numel, Avg/MaxPool
    out·k², AdaptiveAvgPool Σ(h+1)(w+1) per plane, Linear in·out (no bias); additions free.
    For NB201 at 32 px this equals Suite-Zero's value exactly (e.g. 19.248832 for
    (4, 0, 3, 1, 4, 3)). Terminals: the conv part of the blocks only (``from_terminals``:
    k_h·k_w·C_in·C_out·H_o·W_o from ``wt`` and ``act`` shapes; stem, shortcuts,
    classifier, BN/ReLU/pool FLOPs are not blocks).""",
    "grad_norm": """Gradient norm (Abdelfattah et al. 2021 "Zero-Cost Proxies for Lightweight NAS").

    Σ over Conv2d/Linear layers of ‖∂L/∂W‖₂ (per-layer Frobenius norm, summed), L =
    cross-entropy on the batch labels, train mode. Terminals: no — ``wtgrad_D`` is
    ∂(Σ logits)/∂W, not ∂L/∂W, and covers block convs only.""",
    "grasp": """GraSP (Wang, Zhang & Grosse 2020 "Picking Winning Tickets Before Training by
    Preserving Gradient Flow", ICLR), as a proxy by Abdelfattah et al. 2021.

    Σ over Conv2d/Linear weights of −θ ⊙ (H g), g = ∂L/∂θ, H the Hessian of the
    cross-entropy L (T = 1, one iteration), train mode. NASLib's sign (accuracy correlates
    with −θHg). Terminals: no — needs second-order information.""",
    "jacov": """Jacobian covariance (Mellor, Turner, Storkey & Crowley 2020, "Neural Architecture
    Search without Training", arXiv:2006.04647 **v1**).

    J = ∂(Σ logits)/∂x per image (train mode), C = corrcoef of the rows of J (B × B),
    score = −Σ_i [log(λ_i + 1e-5) + 1/(λ_i + 1e-5)] over C's eigenvalues. We use
    ``eigvalsh`` (C is symmetric) where NASLib calls ``np.linalg.eig``: same eigenvalues,
    never complex. Terminals: no — needs the gradient w.r.t. the input image.""",
    "l2_norm": """L2 norm of the weights (Abdelfattah et al. 2021; a NAS-Bench-Suite-Zero baseline).

    Σ over Conv2d/Linear layers of ‖W‖_F (per-layer norm, summed — not the norm of all
    weights together). Depends on the init only. Terminals: the block-restricted variant
    Σ_blocks ‖wt‖_F (``from_terminals``); the stem conv, NB201's two shortcut 1×1 convs
    and the classifier are not blocks, so it is not the full proxy.""",
    "nwot": """NASWOT (Mellor, Turner, Storkey & Crowley 2021, "Neural Architecture Search
    without Training", ICML; arXiv:2006.04647 v2/v3).

    For every torch.nn ReLU-family module, the binary code c = (ReLU input > 0) of each
    image; K = Σ_ReLUs c cᵀ + (1 − c)(1 − c)ᵀ (units on which two images agree = units −
    Hamming distance), score = log|det K| (``slogdet``; NASLib drops the sign). Train mode,
    no labels. Terminals: the block-restricted variant with c = (``inpact_D`` > 0) for R-C-B
    blocks (``act_D`` > 0 for C-B-R) is :func:`from_terminals`; it leaves out ReLUs that are
    not in blocks (NB201: the final BN-ReLU).""",
    "params": """Parameter count in millions (tensorwatch ``ModelStats`` as NASLib: the parameters
    of every leaf module that runs in a batch-1 forward). NB201 all-none cell: 0.073306.
    Terminals: the block conv weights only (Σ numel(``wt``) / 1e6, ``from_terminals``);
    BN affine parameters, stem, shortcuts and classifier are not in the terminals.""",
    "plain": """Plain (Mozer & Smolensky 1989 "Skeletonization"-style first-order saliency), as in
    Abdelfattah et al. 2021: Σ over Conv2d/Linear weights of θ ⊙ ∂L/∂θ (signed), L =
    cross-entropy, train mode. Terminals: no — terminal gradients are of Σ logits.""",
    "snip": """SNIP (Lee, Ajanthan & Torr 2019 "SNIP: Single-shot Network Pruning based on
    Connection Sensitivity", ICLR), as a proxy by Abdelfattah et al. 2021.

    Σ over Conv2d/Linear weights of |∂L/∂m| at mask m = 1, which equals |θ ⊙ ∂L/∂θ|
    (computed that way, no mask needed), L = cross-entropy, train mode. Terminals: no —
    Σ_blocks |wt ⊙ wtgrad_D| is the same formula for the loss Σ logits, a different proxy.""",
    "synflow": """SynFlow (Tanaka, Kunin, Yamins & Ganguli 2020 "Pruning neural networks without any
    data by iteratively conserving synaptic flow", NeurIPS), as a proxy by Abdelfattah et
    al. 2021.

    BatchNorm (1d/2d) forwards replaced by the identity, the network cast to float64 and
    every parameter replaced by |θ|; R = Σ f(1) for an all-ones batch of one image;
    S = Σ over Conv2d/Linear weights of |θ ⊙ ∂R/∂θ|. Reported as **log S** (NASLib's
    ``ZeroCost.query``; Suite-Zero stores the log), 0 when S = 0 (no path to the output);
    :func:`synflow_sum` gives S. Terminals: no — needs |θ|, an all-ones input and no BN.""",
    "zen": """Zen-score (Lin, Wang, Sun, Chen, Sun, Qian, Li & Jin 2021, "Zen-NAS: A Zero-Shot NAS
    for High-Performance Image Recognition", ICCV).

    Re-initialise Conv/Linear N(0, 1) (biases 0, BN/GroupNorm 1/0), running statistics
    reset; x, ε ~ N(0, 1) of the batch's shape; f = the input of the (single)
    nn.AdaptiveAvgPool2d, train mode, no grad; score = log E_batch Σ|f(x) − f(x + 0.01ε)|
    + Σ_BN2d log √mean(running_var) (the running variances after those two forwards, as
    NASLib reads them). Images and labels are not used, only their shape; ``seed`` draws the
    weights and inputs. Terminals: no — a different init and noise inputs.""",
}

_GROUPS: dict[str, str] = {
    "epe_nas": "main", "fisher": "main", "flops": "static", "grad_norm": "main",
    "grasp": "main", "jacov": "main", "l2_norm": "static", "nwot": "main",
    "params": "static", "plain": "main", "snip": "main", "synflow": "synflow", "zen": "zen",
}
_NEEDS_LABELS = frozenset({"epe_nas", "fisher", "grad_norm", "grasp", "plain", "snip"})

#: the 13 proxies in Suite-Zero's (alphabetical) order
PROXY_NAMES: tuple[str, ...] = tuple(sorted(_GROUPS))

PROXIES: dict[str, ProxySpec] = {
    n: ProxySpec(n, n in _NEEDS_LABELS, _DOCS[n], _single(n, _GROUPS[n]), _GROUPS[n])
    for n in PROXY_NAMES
}


def _check_names(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(PROXY_NAMES)
    if isinstance(names, str):
        names = [names]
    out = []
    for n in names:
        if n not in PROXIES:
            raise UnknownNameError(f"unknown proxy {n!r} (known: {', '.join(PROXY_NAMES)})")
        if n not in out:
            out.append(n)
    return out


# ============================================================================ public API
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

    Parameters
    ----------
    model_factory
        ``seed -> nn.Module``, called once per pass (each pass gets a fresh network with
        the same init), e.g. :func:`nb201_factory`; or an ``nn.Module``, deep-copied per
        pass and, unless ``reinit=False``, re-initialised with EZNAS's init
        (:func:`eznas_store.collect.statistics.reinitialise`) from ``seed``.
    images, labels
        One batch (NASLib: 64 training images of the task), normalised as the benchmark
        trained; ``labels`` (int64) are needed by epe_nas, fisher, grad_norm, grasp, plain
        and snip — without them those get ``(nan, "needs labels ...")``.
    seed
        Init seed and zen's noise seed.
    timings
        If given, filled with wall seconds per pass (``static``, ``loss``, ...).

    A proxy that fails for a network (NaN/Inf, singular matrix, an error inside the
    network) gets ``(nan, reason)``; only an unknown name or a bad argument raises.
    """
    wanted = _check_names(names)
    device = torch.device(device)
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        raise ConfigError("images must be a batch tensor (B, C, H, W)")
    images = images.to(device)
    if labels is not None:
        labels = torch.as_tensor(labels).to(device=device, dtype=torch.long)
        if labels.shape[0] != images.shape[0]:
            raise ConfigError(f"{labels.shape[0]} labels for {images.shape[0]} images")
    result: dict[str, tuple[float, str | None]] = {}
    by_group: dict[str, list[str]] = {}
    for n in wanted:
        if PROXIES[n].needs_labels and labels is None:
            result[n] = (math.nan, f"{n} needs labels (it uses the cross-entropy loss or "
                                   "groups images by class); none were given")
        else:
            by_group.setdefault(PROXIES[n].group, []).append(n)
    for group, group_names in by_group.items():
        t0 = time.perf_counter()
        try:
            model = _fresh(model_factory, seed=seed, device=device, reinit=reinit)
            out = _PASSES[group](model, images, labels, seed=seed, names=group_names)
        except EznasError:  # a bad argument or architecture is the caller's to fix
            raise
        except Exception as exc:
            out = _Out(reasons={n: f"{n} failed: {type(exc).__name__}: {exc}" for n in group_names})
        finally:
            if timings is not None:
                timings[group] = timings.get(group, 0.0) + time.perf_counter() - t0
        for n in group_names:
            if n in out.values and math.isfinite(out.values[n]):
                result[n] = (out.values[n], None)
            elif n in out.values:
                result[n] = (math.nan, f"{n} is {out.values[n]} for this network")
            else:
                result[n] = (math.nan, out.reasons.get(n, f"{n} gave no value"))
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
    _check_names([name])
    if PROXIES[name].needs_labels and labels is None:
        raise ConfigError(f"proxy {name!r} needs labels (pass the batch's labels)")
    value, _ = compute_all(model_factory_or_model, images, labels, seed=seed, names=[name],
                           device=device, reinit=reinit)[name]
    return value


def synflow_sum(model_factory_or_model: ModelSource, images: torch.Tensor, *, seed: int,
                reinit: bool = True) -> float:
    """SynFlow's raw sum S (``synflow`` reports log S); only ``images.shape`` is used."""
    model = _fresh(model_factory_or_model, seed=seed, device=images.device, reinit=reinit)
    return _synflow_total(model, images.shape[1:])


# ============================================================================ block variants
#: proxies with an exact block-restricted variant computable from EZNAS terminals
BLOCK_PROXIES: tuple[str, ...] = ("flops", "l2_norm", "nwot", "params")


def _check_block_name(name: str, structure: str) -> None:
    if name not in BLOCK_PROXIES:
        if name in PROXIES:
            raise UnknownNameError(
                f"proxy {name!r} has no block-restricted variant from the EZNAS terminals "
                f"(those that do: {', '.join(BLOCK_PROXIES)}); see its docstring")
        raise UnknownNameError(f"unknown proxy {name!r} (known: {', '.join(PROXY_NAMES)})")
    if structure not in ("rcb", "cbr"):
        raise ConfigError(f"structure must be 'rcb' or 'cbr', got {structure!r}")


def _tensor(block: Any, key: str) -> torch.Tensor:
    tensors = getattr(block, "tensors", block)
    if not isinstance(tensors, Mapping) or key not in tensors:
        raise ConfigError(f"a block has no {key!r} terminal (blocks are mappings of "
                          "terminal name -> tensor, or BlockStats)")
    v = tensors[key]
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))


def from_terminals(name: str, blocks: Sequence[Any], *, structure: str = "rcb") -> float:
    """A **block-restricted variant** of a proxy, from the EZNAS terminals of one network.

    ``blocks``: per R-C-B (or C-B-R) block, a mapping terminal name → tensor (or a
    :class:`eznas_store.collect.statistics.BlockStats`), raw values as the collector produced them.
    Not the full proxy: stem conv, shortcut convs, classifier and ReLUs outside blocks are
    not blocks. Definitions (what :func:`block_variant` computes from a network):

    - ``l2_norm``: Σ_blocks ‖wt‖_F
    - ``nwot``: log|det K| with K from the codes ``inpact_D > 0`` (rcb) / ``act_D > 0`` (cbr)
    - ``params``: Σ_blocks numel(wt) / 1e6 (conv weights; BN affine parameters excluded)
    - ``flops``: Σ_blocks k_h·k_w·(C_in/groups)·C_out·H_o·W_o / 1e6 (conv MACs, one image)
    """
    _check_block_name(name, structure)
    if not blocks:
        raise ConfigError("from_terminals needs at least one block")
    if name == "l2_norm":
        return _fsum(_tensor(b, "wt").double().norm() for b in blocks)
    if name == "params":
        return sum(_tensor(b, "wt").numel() for b in blocks) / 1e6
    if name == "flops":
        total = 0
        for b in blocks:
            wt, act = _tensor(b, "wt"), _tensor(b, "act_D")
            total += int(np.prod(wt.shape)) * int(np.prod(act.shape[2:]))
        return total / 1e6
    key = "inpact_D" if structure == "rcb" else "act_D"
    return nwot_logdet(_tensor(b, key) > 0 for b in blocks)


def block_variant(name: str, model_factory_or_model: ModelSource, images: torch.Tensor, *,
                  seed: int, structure: str = "rcb", reinit: bool = True,
                  device: str | torch.device = "cpu") -> float:
    """The block-restricted variant of :func:`from_terminals`, computed from the network.

    Blocks are found with :func:`eznas_store.collect.statistics.find_blocks`; the network is fresh,
    in train mode, and sees ``images`` as the collector's D input does.
    """
    _check_block_name(name, structure)
    device = torch.device(device)
    model = _fresh(model_factory_or_model, seed=seed, device=device, reinit=reinit)
    blocks = find_blocks(model, structure)
    if not blocks:
        raise ConfigError(f"the model has no {structure.upper()} blocks")
    convs = [b[1] if structure == "rcb" else b[0] for b in blocks]
    if name == "l2_norm":
        return _fsum(c.weight.detach().double().norm() for c in convs)
    if name == "params":
        return sum(c.weight.numel() for c in convs) / 1e6
    images = images.to(device)
    if name == "flops":
        sizes: dict[int, int] = {}
        _forward_with_hooks(model, images, [c.register_forward_hook(
            lambda m, a, o: sizes.__setitem__(id(m), int(np.prod(o.shape[2:])))) for c in convs])
        return sum(int(np.prod(c.weight.shape)) * sizes[id(c)] for c in convs if id(c) in sizes) / 1e6
    relus = [b[0] if structure == "rcb" else b[2] for b in blocks]
    codes: list[torch.Tensor] = []
    _forward_with_hooks(model, images,
                        [r.register_forward_pre_hook(lambda m, a: codes.append(a[0].detach() > 0)) for r in relus])
    return nwot_logdet(codes)


def _forward_with_hooks(model: nn.Module, images: torch.Tensor, handles: list) -> None:
    """One no-grad forward pass that feeds the given hooks, which are removed afterwards."""
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
