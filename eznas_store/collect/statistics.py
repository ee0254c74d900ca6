"""The EZNAS statistics collector (docs/design.md §2): one network, three passes, 22 terminals per block.

Per network: re-initialise every module, keep train mode (BatchNorm uses batch
statistics), and for each input X in D (data), N (noise), P (perturbed data) run a
forward pass and ``logits.backward(ones_like(logits))``, zeroing gradients in between.

A *block* is any ``nn.Sequential`` whose children are exactly ReLU→Conv2d→BatchNorm2d
(``structure='rcb'``) or Conv2d→BatchNorm2d→ReLU (``'cbr'``), in execution order; so the
collector works for any PyTorch model built from such units, not only benchmark cells.

What is kept per block is the smallest exact set the store needs (``STORED``); the other
terminals are functions of it (``derived_preact``, ``derived_inpactgrad``): ``preact = relu(inpact)`` and
``inpactgrad = preactgrad * (inpact > 0)`` for rcb; for cbr the block input *is* the conv
input, so ``preact = inpact`` and ``inpactgrad = preactgrad``. ``full=True`` additionally
measures every terminal directly from the network, which the tests compare with the
derivation.

Gradients are taken per path: a block's input tensor may also feed other edges (a NB201
node feeds up to three), so a hook on the shared tensor would see the *sum* of all uses.
Each hooked input is replaced by an alias (``x.view_as(x)``) used only by this block.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from eznas_store.terminals import INPUTS, STORED, CollectConfig, derive_inpactgrad, derive_preact


@dataclass
class BlockStats:
    """Raw tensors of one block (P values raw, not differences), on the CPU."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class NetworkStats:
    blocks: list[BlockStats]
    params: int
    flops: float
    seconds: float


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else CPU; a CUDA request without one is a clear error."""
    from eznas_store.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for CUDA, but torch sees no GPU here")
    return torch.device(name)


# ----------------------------------------------------------------------------- init & inputs
def reinitialise(model: nn.Module, generator: torch.Generator) -> None:
    """EZNAS init: Conv kaiming_normal(fan_out, relu) bias 0; BN weight 1 bias 0; Linear N(0, 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if m.running_mean is not None:
                m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def make_inputs(data: torch.Tensor, *, perturb_scale: float, seed: int) -> dict[str, torch.Tensor]:
    """The D, N and P batches; noise comes from a CPU generator so CPU and CUDA runs agree."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(data.shape, generator=g, dtype=data.dtype)
    perturb = torch.randn(data.shape, generator=g, dtype=data.dtype)
    return {"D": data, "N": noise, "P": data + perturb_scale * perturb}


def network_seed(run_seed: int, network_index: int) -> int:
    """Per-network init seed: independent of shard and order, so reruns are bit-identical."""
    return (run_seed * 1_000_003 + network_index * 7_919 + 1) % (2**63 - 1)


# ----------------------------------------------------------------------------- blocks
def find_blocks(model: nn.Module, structure: str) -> list[nn.Sequential]:
    """Every R-C-B (or C-B-R) ``nn.Sequential`` of ``model``, in registration order."""
    want = (nn.ReLU, nn.Conv2d, nn.BatchNorm2d) if structure == "rcb" else (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)
    found = []
    for m in model.modules():
        if isinstance(m, nn.Sequential) and len(m) == 3 and all(
            type(c) is t or isinstance(c, t) for c, t in zip(m, want)
        ):
            found.append(m)
    return found


def _parts(block: nn.Sequential, structure: str) -> tuple[nn.Module | None, nn.Conv2d, nn.BatchNorm2d]:
    if structure == "rcb":
        return block[0], block[1], block[2]
    return None, block[0], block[1]


class _Recorder:
    """Hooks that record one pass's tensors per block, in execution order."""

    def __init__(self, blocks: list[nn.Sequential], structure: str, full: bool) -> None:
        self.blocks = blocks
        self.structure = structure
        self.full = full
        self.order: list[int] = []
        self.rec: dict[int, dict[str, torch.Tensor]] = {}
        self.handles: list = []
        for i, b in enumerate(blocks):
            relu, conv, bn = _parts(b, structure)
            self.handles.append(b.register_forward_pre_hook(self._block_pre(i)))
            if relu is not None:
                self.handles.append(relu.register_forward_pre_hook(self._relu_pre(i)))
                self.handles.append(relu.register_forward_hook(self._relu_post(i)))
            self.handles.append(conv.register_forward_pre_hook(self._conv_pre(i)))
            self.handles.append(bn.register_forward_hook(self._bn_post(i)))

    def reset(self) -> None:
        self.order = []
        self.rec = {}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def _store(self, i: int, name: str):
        def hook(grad: torch.Tensor) -> None:
            self.rec[i][name] = grad.detach().clone()
        return hook

    def _block_pre(self, i: int):
        def hook(module, args):
            if i in self.rec:
                raise RuntimeError("a block ran twice in one pass; blocks must not be shared")
            self.order.append(i)
            self.rec[i] = {}
        return hook

    def _relu_pre(self, i: int):
        def hook(module, args):
            x = args[0]
            self.rec[i]["inpact"] = x.detach().clone()
            if self.full:
                alias = x.view_as(x)
                alias.register_hook(self._store(i, "inpactgrad"))
                return (alias,)
            return None
        return hook

    def _relu_post(self, i: int):
        def hook(module, args, out):
            if self.full:
                self.rec[i]["preact"] = out.detach().clone()
        return hook

    def _conv_pre(self, i: int):
        def hook(module, args):
            x = args[0]
            if self.structure == "cbr":
                self.rec[i]["inpact"] = x.detach().clone()
                if self.full:
                    self.rec[i]["preact"] = x.detach().clone()
            alias = x.view_as(x)
            alias.register_hook(self._store(i, "preactgrad"))
            if self.full and self.structure == "cbr":
                alias.register_hook(self._store(i, "inpactgrad"))
            return (alias,)
        return hook

    def _bn_post(self, i: int):
        def hook(module, args, out):
            self.rec[i]["act"] = out.detach().clone()
            out.register_hook(self._store(i, "actgrad"))
        return hook


def count_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of Conv2d and Linear layers for one sample (NB201 counts these)."""
    total = 0.0

    def conv_hook(m: nn.Conv2d, args, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += float(out[0].numel()) * k

    def lin_hook(m: nn.Linear, args, out):
        nonlocal total
        total += float(m.in_features * m.out_features)

    hs = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hs += [m.register_forward_hook(lin_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hs:
            h.remove()
    return total


def collect(
    model: nn.Module,
    data: torch.Tensor,
    *,
    config: CollectConfig,
    init_seed: int,
    device: torch.device | str = "cpu",
    full: bool = False,
) -> NetworkStats:
    """Run the three passes and return each block's raw tensors (CPU, float32).

    ``data`` is the normalised image batch (B×3×H×W). With ``full=False`` each block holds
    ``STORED`` (P raw); with ``full=True`` also ``preact_X`` and ``inpactgrad_X`` as measured.
    """
    with deterministic(config.threads):
        return _collect(model, data, config=config, init_seed=init_seed, device=torch.device(device), full=full)


@contextlib.contextmanager
def deterministic(threads: int):
    """Fixed CPU thread count, deterministic cuDNN and no TF32 for one collection, then restore.

    Bit-identical tensors across reruns, shards and machines need the same reduction
    order: on CPU that follows the thread count, on CUDA cuDNN must not pick kernels by
    benchmarking or use atomics. cuDNN convolutions and CUDA matmuls may also run in TF32
    (10 mantissa bits; PyTorch allows it for convolutions by default): statistics ingested
    so would differ from CPU ones by ~1e-3, which moves programs whose ranking is set by
    round-off (``fitness.roundoff``), so a collection keeps full float32 on every device.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (torch.get_num_threads(), cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    torch.set_num_threads(threads)
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = True, False, False, False
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved[1:]


def _collect(model: nn.Module, data: torch.Tensor, *, config: CollectConfig, init_seed: int,
             device: torch.device, full: bool) -> NetworkStats:
    t0 = time.perf_counter()
    reinitialise(model, torch.Generator().manual_seed(init_seed))
    model.to(device).train()
    blocks = find_blocks(model, config.structure)
    inputs = make_inputs(data, perturb_scale=config.perturb_scale, seed=config.seed)
    rec = _Recorder(blocks, config.structure, full)
    per_block: list[dict[str, torch.Tensor]] = [dict() for _ in blocks]
    order: list[int] | None = None
    try:
        for x_name in INPUTS:
            rec.reset()
            model.zero_grad(set_to_none=True)
            # the input requires grad so a block that reads it directly still gets gradients
            x = inputs[x_name].to(device).detach().requires_grad_(True)
            logits = model(x)
            logits.backward(torch.ones_like(logits))
            if order is None:
                order = list(rec.order)
            elif rec.order != order:
                raise RuntimeError("block execution order changed between passes")
            for i in order:
                conv = _parts(blocks[i], config.structure)[1]
                got = rec.rec[i]
                got["wtgrad"] = conv.weight.grad.detach().clone()
                for kind, value in got.items():
                    per_block[i][f"{kind}_{x_name}"] = value.cpu()
    finally:
        rec.remove()
    assert order is not None
    out: list[BlockStats] = []
    for i in order:
        conv = _parts(blocks[i], config.structure)[1]
        t = per_block[i]
        t["wt"] = conv.weight.detach().cpu().clone()
        out.append(BlockStats(t))
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, inputs["D"].to(device))
    model.zero_grad(set_to_none=True)
    return NetworkStats(blocks=out, params=params, flops=flops, seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- derivation
def derived_preact(inpact: torch.Tensor, structure: str) -> torch.Tensor:
    """``preact`` from the block input: the ReLU's output (rcb); the conv input itself (cbr)
    (the rule is ``terminals.derive_preact``, shared with the store's numpy reader)."""
    return derive_preact(inpact, structure, torch.relu)


def derived_inpactgrad(preactgrad: torch.Tensor, inpact: torch.Tensor, structure: str) -> torch.Tensor:
    """``inpactgrad`` from the conv-input gradient: masked by the ReLU (rcb); itself (cbr)
    (``terminals.derive_inpactgrad``)."""
    return derive_inpactgrad(preactgrad, inpact, structure)


def derive_raw(tensors: dict[str, torch.Tensor], structure: str, x: str) -> dict[str, torch.Tensor]:
    """``preact_X`` and ``inpactgrad_X`` (raw, not differenced) from the stored tensors."""
    inpact = tensors[f"inpact_{x}"]
    preactgrad = tensors[f"preactgrad_{x}"]
    return {f"preact_{x}": derived_preact(inpact, structure),
            f"inpactgrad_{x}": derived_inpactgrad(preactgrad, inpact, structure)}


def stored_subset(block: BlockStats | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a block that a store keeps (``STORED``), e.g. to build a chunk in memory."""
    t = block.tensors if isinstance(block, BlockStats) else block
    return {k: t[k] for k in STORED}
