"""Registered programs, loadable by name: the published EZNAS-A.

:func:`eznas_store.programs.codec.load_program` looks a name up here before it tries a
file, so ``--proxy eznas-a`` and ``load_program("eznas-a")`` need no JSON file.

Example
-------
>>> NAMED_PROGRAMS["eznas-a"].formula()
'frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))'
"""

from __future__ import annotations

from eznas_store.programs.formula import parse_formula
from eznas_store.programs.tree import Program

__all__ = ["NAMED_PROGRAMS"]


def _eznas_a() -> Program:
    """EZNAS-A, the program published with EZNAS (Akhauri et al., NeurIPS 2022).

    Per block ``frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))``, block score
    the mean of that output (a 0-d tensor, so mean = value), network score the mean over
    blocks. Read from the released code (IntelLabs/Hardware-Aware-Automated-Machine-
    Learning, ``EZNAS/verify_scores.py`` + ``EZNAS/evol_utilities.py``): it evaluates the
    hand-built individual ``[OP18, OP29, OP20, OP14, ARG8]`` = frobenius, sigmoid,
    ``torch.logdet`` (on the last two dims as they are, NaN -> 0: our
    ``logdet_lastdims``), sign. ``populate`` maps argument ``i`` to
    ``fixed_ordering[i - 1]``, so ARG8 is key 1 of the block's statistics dict,
    ``inpactgraddata`` -- the gradient w.r.t. the block input on the *data* batch;
    without that off-by-one it would be the noise-input gradient, which is one reading
    of the paper. docs/design.md §3's independent check on 150 NB201 cells (batch 16) gave
    tau 0.59 with the data-input gradient vs 0.50 with the noise-input one, close to
    the released 0.620, so ``inpactgrad_D`` it is.
    """
    tree = parse_formula("frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))")
    return Program(
        tree=tree,
        to_scalar="mean",
        terminal_set="statistics",
        name="eznas-a",
        meta={
            "source": "EZNAS (Akhauri et al., NeurIPS 2022), released code verify_scores.py",
            "released_nb201_cifar10_batch16": {"kendall_tau": 0.6195, "spearman_rho": 0.8085},
        },
    )


def _statistics_twin(name: str, formula: str, source: str, why: str) -> Program:
    """A published hand-crafted proxy written over the stored statistics with the opt-in
    extension ops (``evolve --op-set extended``), to seed or compare with; not the proxy itself
    (which ``collect/proxies`` computes with its paper's protocol), see its ``meta``."""
    return Program(tree=parse_formula(formula), to_scalar="mean", terminal_set="statistics", aggregate="sum",
                   name=name, meta={"source": source, "differs_from_the_paper": why, "op_set": "extended"})


#: registered programs, loadable by name with :func:`load_program`
NAMED_PROGRAMS: dict[str, Program] = {
    "eznas-a": _eznas_a(),
    "meco-statistics": _statistics_twin(
        "meco-statistics", "eig_min(channel_corr(act_D))", "MeCo (Jiang et al., NeurIPS 2023): the sum over "
        "layers of the smallest eigenvalue of a feature map's channel Pearson matrix, one real image",
        "read on each R-C-B block's BN output of the D pass (EZNAS init, train-mode BN) instead of every "
        "module's output of MeCo's own network and init; at batch > 1 the channels' observations pool the batch"),
    "az-expressivity-statistics": _statistics_twin(
        "az-expressivity-statistics", "eig_entropy(channel_cov(act_N))", "AZ-NAS expressivity (Lee & Ham, "
        "CVPR 2024): the sum over feature maps of the entropy of their channel covariance's eigenvalues, "
        "Gaussian input",
        "read on each R-C-B block's BN output of the N pass (Gaussian input, EZNAS init) instead of the "
        "18 cell outputs of AZ-NAS's network and init; negative eigenvalues are clamped at 0 instead of "
        "giving NaN"),
}
