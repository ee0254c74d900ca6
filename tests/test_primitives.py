"""The op table: every op against a hand-computed value (guards included), and vmap."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from eznas_store.programs.ops import EXTENSION_OPS, OPS, OPS_BY_ID, PAPER_OPS, Op, apply_op, op_set

EXTENSION_NAMES = {"channel_cov", "channel_corr", "eig_min", "eig_max", "eig_entropy", "eff_rank"}

T = torch.tensor
NAN, INF = float("nan"), float("inf")

PAPER_NAMES = [
    "sum", "difference", "product", "matmul", "less", "greater", "equal", "log", "abslog",
    "abs", "power", "exp", "normalize", "relu", "sign", "heaviside", "invert", "frobenius",
    "det", "logdet", "symeig_ratio", "eig_ratio", "normalized_sum", "l1_norm", "hamming",
    "kl_div", "cosine", "softmax", "sigmoid", "ones_like", "zeros_like", "gt0", "lt0", "numel",
]
BINARY = {"sum", "difference", "product", "matmul", "less", "greater", "equal", "hamming",
          "kl_div", "cosine"}


def close(got: torch.Tensor, want: torch.Tensor | float | list, **kw) -> None:
    want_t = torch.as_tensor(want, dtype=got.dtype)
    assert got.shape == want_t.shape, (got.shape, want_t.shape)
    assert torch.allclose(got, want_t, equal_nan=True, **kw), (got, want_t)


def test_table_ids_names_and_arity():
    assert [OPS_BY_ID[i].name for i in range(34)] == PAPER_NAMES
    assert OPS_BY_ID[34].name == "logdet_lastdims"
    assert set(PAPER_OPS) == set(PAPER_NAMES) | {"logdet_lastdims"}
    assert set(EXTENSION_OPS) == EXTENSION_NAMES and set(OPS) == set(PAPER_OPS) | EXTENSION_NAMES
    assert [OPS_BY_ID[i].name for i in range(35, 41)] == sorted(EXTENSION_NAMES, key=lambda n: OPS[n].id)
    assert op_set("paper") is PAPER_OPS and op_set("extended") == OPS
    with pytest.raises(KeyError, match="paper, extended"):
        op_set("everything")
    for op in OPS.values():
        assert isinstance(op, Op) and OPS[op.name] is op and OPS_BY_ID[op.id] is op
        assert op.arity == (2 if op.name in BINARY else 1), op.name
        assert op.doc and op.vmappable


def test_apply_op_checks_arity():
    close(apply_op("sum", T([1.0]), T([2.0])), [3.0])
    with pytest.raises(TypeError):
        apply_op("sum", T([1.0]))


# --------------------------------------------------------------------------- binary


def test_elementwise_binary():
    a, b = T([1.0, 2.0]), T([3.0, 5.0])
    close(OPS["sum"].fn(a, b), [4.0, 7.0])
    close(OPS["difference"].fn(a, b), [-2.0, -3.0])
    close(OPS["product"].fn(a, b), [3.0, 10.0])
    # torch broadcasting, and a mismatch simply raises
    close(OPS["sum"].fn(T([[1.0], [2.0]]), T([10.0, 20.0])), [[11.0, 21.0], [12.0, 22.0]])
    with pytest.raises(RuntimeError):
        OPS["sum"].fn(T([1.0, 2.0]), T([1.0, 2.0, 3.0]))


def test_matmul():
    a, b = T([[1.0, 2.0], [3.0, 4.0]]), T([[5.0, 6.0], [7.0, 8.0]])
    close(OPS["matmul"].fn(a, b), [[19.0, 22.0], [43.0, 50.0]])
    # 0-d operands are 1-element vectors (released code): scalar @ scalar = product
    close(OPS["matmul"].fn(T(2.0), T(3.0)), 6.0)
    close(OPS["matmul"].fn(T(2.0), T([[1.0, 2.0]])), [2.0, 4.0])
    with pytest.raises(RuntimeError):
        OPS["matmul"].fn(T([[1.0, 2.0, 3.0]]), T([[1.0, 2.0]]))


def test_comparisons_are_float():
    a, b = T([1.0, 2.0, 3.0]), T([2.0, 2.0, 2.0])
    for name, want in [("less", [1, 0, 0]), ("greater", [0, 0, 1]), ("equal", [0, 1, 0])]:
        got = OPS[name].fn(a, b)
        assert got.dtype == torch.float32
        close(got, [float(w) for w in want])


def test_hamming():
    a, b = T([1.0, -1.0, 0.0, 2.0]), T([1.0, 1.0, -3.0, -2.0])
    # heaviside(.,0): a -> 1,0,0,1 ; b -> 1,1,0,0 ; they differ at 2 positions
    close(OPS["hamming"].fn(a, b), 2.0)
    close(OPS["hamming"].fn(a.reshape(2, 2), b), 2.0)  # flattened first


def test_kl_div():
    # batchmean: sum(B log B - B A) / A.shape[0]
    close(OPS["kl_div"].fn(T([[0.0, 0.0]]), T([[0.5, 0.5]])), math.log(0.5))
    close(OPS["kl_div"].fn(T([[5.0, 0.0]]), T([[0.0, 1.0]])), 0.0)  # 0 log 0 = 0
    assert torch.isnan(OPS["kl_div"].fn(T([[0.0]]), T([[-1.0]])))
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 2, 4, 4, generator=g), torch.rand(3, 2, 4, 4, generator=g)
    want = F.kl_div(a.reshape(3, -1), b.reshape(3, -1), reduction="batchmean")
    close(OPS["kl_div"].fn(a, b), want.item(), rtol=1e-5)
    close(OPS["kl_div"].fn(T(1.0), T(2.0)), 2 * math.log(2) - 2)  # 0-d is a 1x1 matrix


def test_cosine():
    a, b = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [1.0, 1.0]])
    close(OPS["cosine"].fn(a, b), 1.0 + 1.0 / math.sqrt(2))
    close(OPS["cosine"].fn(a.reshape(2, 1, 2), b.reshape(2, 2, 1)), 1.0 + 1.0 / math.sqrt(2))


# --------------------------------------------------------------------------- unary


def test_log_and_abslog_guards():
    e = math.e
    close(OPS["log"].fn(T([-1.0, 0.0, 1.0, e])), [0.0, 0.0, 0.0, 1.0])
    close(OPS["abslog"].fn(T([-e, 0.0, 1.0, e])), [1.0, 0.0, 0.0, 1.0])


def test_simple_unary():
    close(OPS["abs"].fn(T([-2.0, 3.0])), [2.0, 3.0])
    close(OPS["power"].fn(T([-2.0, 3.0])), [4.0, 9.0])
    close(OPS["exp"].fn(T([0.0, 1.0])), [1.0, math.e])
    close(OPS["relu"].fn(T([-1.0, 2.0])), [0.0, 2.0])
    close(OPS["sign"].fn(T([-2.0, 0.0, 3.0])), [-1.0, 0.0, 1.0])
    close(OPS["heaviside"].fn(T([-1.0, 0.0, 2.0])), [0.0, 0.0, 1.0])
    close(OPS["invert"].fn(T([2.0, 0.0])), [0.5, INF])
    close(OPS["sigmoid"].fn(T([0.0, -INF])), [0.5, 0.0])
    close(OPS["ones_like"].fn(T([[3.0, 4.0]])), [[1.0, 1.0]])
    close(OPS["zeros_like"].fn(T([[3.0, 4.0]])), [[0.0, 0.0]])
    close(OPS["gt0"].fn(T([-1.0, 0.0, 2.0])), [0.0, 0.0, 1.0])
    close(OPS["lt0"].fn(T([-1.0, 0.0, 2.0])), [1.0, 0.0, 0.0])


def test_normalize_guard():
    close(OPS["normalize"].fn(T([1.0, 2.0, 3.0])), [-1.0, 0.0, 1.0])  # unbiased std = 1
    close(OPS["normalize"].fn(T([5.0, 5.0])), [0.0, 0.0])  # 0/0 -> 0
    close(OPS["normalize"].fn(T([7.0])), [0.0])  # std of one entry is NaN -> 0
    close(OPS["normalize"].fn(T(7.0)), 0.0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 4, generator=g)
    close(OPS["normalize"].fn(x), (x - x.mean()) / x.std(), atol=1e-5)


def test_reductions():
    close(OPS["frobenius"].fn(T([[3.0, 4.0]])), 5.0)
    close(OPS["frobenius"].fn(T(-2.0)), 2.0)
    close(OPS["normalized_sum"].fn(T([1.0, 2.0, 3.0, 6.0])), 3.0)
    close(OPS["l1_norm"].fn(T([-1.0, 2.0, -3.0, 2.0])), 2.0)
    close(OPS["numel"].fn(torch.zeros(2, 3)), [6.0])
    close(OPS["numel"].fn(T(4.0)), [1.0])


def test_softmax_uses_torchs_implicit_dim():
    close(OPS["softmax"].fn(T([0.0, math.log(3.0)])), [0.25, 0.75])
    x = torch.arange(24.0).reshape(2, 3, 2, 2) / 10
    close(OPS["softmax"].fn(x).sum(dim=1), torch.ones(2, 2, 2).tolist())
    close(OPS["softmax"].fn(x[0, 0]).sum(dim=1), [1.0, 1.0])
    close(OPS["softmax"].fn(T(3.0)), 1.0)


# --------------------------------------------------------------------------- linear algebra


def test_det():
    close(OPS["det"].fn(T([[1.0, 2.0], [3.0, 4.0]])), -2.0)
    batched = torch.eye(2).expand(2, 3, 2, 2) * 2
    close(OPS["det"].fn(batched), torch.full((2, 3), 4.0).tolist())
    with pytest.raises(RuntimeError):
        OPS["det"].fn(T([1.0, 2.0]))
    with pytest.raises(RuntimeError):
        OPS["det"].fn(torch.ones(2, 3))


def test_logdet_of_gram_matrix():
    # rows of A: (1,0), (0,2) -> A A^T = diag(1, 4)
    close(OPS["logdet"].fn(T([[1.0, 0.0], [0.0, 2.0]])), math.log(4.0))
    close(OPS["logdet"].fn(torch.zeros(2, 3)), -INF)  # singular Gram matrix
    close(OPS["logdet"].fn(T([[NAN, 0.0], [0.0, 1.0]])), 0.0)  # NaN -> 0
    close(OPS["logdet"].fn(T(3.0)), math.log(9.0))
    # (n, -1) reshape of a 4-D tensor: n = 2 rows of 4 entries
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0, 0, 0], x[1, 0, 1, 1] = 1.0, 3.0
    close(OPS["logdet"].fn(x), math.log(9.0))


def test_logdet_lastdims():
    close(OPS["logdet_lastdims"].fn(T([[2.0, 0.0], [0.0, 3.0]])), math.log(6.0))
    close(OPS["logdet_lastdims"].fn(T([[0.0, 1.0], [1.0, 0.0]])), 0.0)  # det < 0: NaN -> 0
    close(OPS["logdet_lastdims"].fn(torch.zeros(2, 2)), -INF)  # singular stays -inf
    x = torch.eye(2).repeat(2, 3, 1, 1) * math.e
    close(OPS["logdet_lastdims"].fn(x), torch.full((2, 3), 2.0).tolist())  # per (B, C)
    with pytest.raises(RuntimeError):
        OPS["logdet_lastdims"].fn(T([1.0, 2.0]))
    with pytest.raises(RuntimeError):
        OPS["logdet_lastdims"].fn(T(1.0))


def test_symeig_ratio():
    close(OPS["symeig_ratio"].fn(T([[1.0, 0.0], [0.0, 2.0]])), 2.0)  # eig(diag(2,4))
    close(OPS["symeig_ratio"].fn(T([[0.0, 1.0], [0.0, 0.0]])), -1.0)  # eig([[0,1],[1,0]])
    x = torch.diag(T([1.0, 3.0])).expand(2, 3, 2, 2)
    close(OPS["symeig_ratio"].fn(x), torch.full((2, 3), 3.0).tolist())
    with pytest.raises(RuntimeError):
        OPS["symeig_ratio"].fn(torch.ones(2, 3))
    with pytest.raises(ValueError):
        OPS["symeig_ratio"].fn(T([1.0, 2.0]))
    with pytest.raises(ValueError):
        OPS["symeig_ratio"].fn(T(1.0))


def test_eigen_ratios_never_hand_non_finite_matrices_to_lapack():
    """MKL can crash the process on NaN input; the ops must answer NaN instead."""
    nan = float("nan")
    bad = T([[1.0, nan], [0.0, 2.0]])
    assert torch.isnan(OPS["eig_ratio"].fn(bad))
    assert torch.isnan(OPS["symeig_ratio"].fn(bad))
    mixed = torch.stack([T([[1.0, 0.0], [0.0, 2.0]]), bad])
    out = OPS["symeig_ratio"].fn(mixed)
    close(out[0], 2.0)
    assert torch.isnan(out[1])
    assert torch.isnan(OPS["eig_ratio"].fn(T([[float("inf"), 1.0], [0.0, 1.0]])))


def test_eig_ratio():
    # rows (1,0,0), (0,2,0) -> A A^T = diag(1, 4) -> 4 / 1
    close(OPS["eig_ratio"].fn(T([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])), 4.0)
    close(OPS["eig_ratio"].fn(T([[0.0, 2.0], [1.0, 0.0]]).reshape(2, 1, 1, 2)), 4.0)
    close(OPS["eig_ratio"].fn(T(3.0)), 1.0)


# --------------------------------------------------------------------------- vmap

SHAPES = {
    "activation": (2, 3, 4, 4),  # (B, C, H, W) with H == W
    "weight": (4, 3, 3, 3),  # (Cout, Cin, k, k)
    "square": (5, 5),
    "matrix": (3, 5),
    "scalar": (),
}


def _stack(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """3 random samples with exact zeros and negatives, so the guards are exercised."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((3, *shape), generator=g)
    keep = torch.rand((3, *shape), generator=g) > 0.2
    return x * keep


def _run(fn, *args):
    try:
        return fn(*args), None
    except Exception as e:  # noqa: BLE001 - any exception means "invalid for this block"
        return None, e


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("name", list(OPS))
def test_vmap_matches_per_sample_loop(name: str, shape_name: str):
    op = OPS[name]
    shape = SHAPES[shape_name]
    inputs = [_stack(shape, seed=10 * i + len(shape)) for i in range(op.arity)]
    if name == "kl_div":  # a valid target is non-negative
        inputs[1] = inputs[1].abs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "no batching rule" performance fallbacks
        batched, batched_err = _run(torch.func.vmap(op.fn), *inputs)
    looped, looped_err = _run(lambda *xs: torch.stack([op.fn(*s) for s in zip(*xs)]), *inputs)
    assert (batched_err is None) == (looped_err is None), (batched_err, looped_err)
    if looped is None:
        return
    assert batched.shape == looped.shape
    assert batched.is_floating_point() and batched.dtype == torch.float32
    assert torch.allclose(batched, looped, rtol=1e-4, atol=1e-5, equal_nan=True), (batched, looped)


def test_ratio_of_a_singular_matrix_is_inf_not_rounding_noise():
    """Found by the evaluator property test: max/min eigenvalue of a singular matrix was
    ±1e15-ish noise that differed between batched and single solves."""
    a = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # rank 2
    single = OPS["eig_ratio"].fn(a)
    assert torch.isinf(single) and single > 0
    stacked = OPS["symeig_ratio"].fn(torch.stack([a, a + a.T, torch.eye(3)]))
    assert torch.isinf(stacked[0]) and torch.isinf(stacked[1]) and stacked[2] == 1.0
