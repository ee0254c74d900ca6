"""The input-Jacobian proxies: ``jacov`` and ``epe_nas``, from ``∂(Σ logits)/∂x`` per image.

Both read the gradient of the summed logits with respect to the input images of one
forward (``main`` pass, :data:`INPUT_JACOBIAN`); ``epe_nas`` also groups the rows by label.
"""

from __future__ import annotations

import numpy as np

from eznas_store.collect.proxies.batch_pass import BatchState

__all__ = ["epe_nas", "jacov"]

#: NASLib's constants
_JACOV_K = 1e-5
_EPE_K = 1e-5


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


def jacov(state: BatchState) -> float:
    """Jacobian covariance (Mellor, Turner, Storkey & Crowley 2020, "Neural Architecture
    Search without Training", arXiv:2006.04647 **v1**).

    J = ∂(Σ logits)/∂x per image (train mode), C = corrcoef of the rows of J (B × B),
    score = −Σ_i [log(λ_i + 1e-5) + 1/(λ_i + 1e-5)] over C's eigenvalues. We use
    ``eigvalsh`` (C is symmetric) where NASLib calls ``np.linalg.eig``: same eigenvalues,
    never complex. Terminals: no — needs the gradient w.r.t. the input image."""
    return _jacov_score(state.input_jacobian())


def epe_nas(state: BatchState) -> float:
    """EPE-NAS (Lopes, Alexandre, Santos & Alexandre 2021, "EPE-NAS: Efficient Performance
    Estimation Without Training for Neural Architecture Search", ICANN 2021).

    Input Jacobians J = ∂(Σ logits)/∂x (train mode, labels only group the rows); per class
    c present in the batch, s_c = Σ log(|corrcoef(J_c)| + 1e-5); score = Σ_c |s_c| for ≤100
    classes (for >100: s_c /= n_c and score = Σ_c Σ_c' |s_c − s_c'| / #classes). A class
    with one sample adds log(1 + 1e-5), as NASLib's ``np.corrcoef`` of one row does.
    Terminals: no — needs the gradient w.r.t. the input image, not block tensors."""
    jac = state.input_jacobian()
    labels = state.labels.detach().cpu().numpy()
    return _epe_score(jac, labels, int(state.logits.shape[-1]))
