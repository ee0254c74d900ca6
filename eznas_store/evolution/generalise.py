"""Selection that generalises: the hall of fame by validation fitness, final programs on test.

With ``--split`` the statistics scorer holds train, validation and test tasks
(:mod:`.split`). Selection reads train fitness only. Every generation the ``k`` best
distinct programs of the generation (by train fitness; raced-out ones excluded) are
scored on the validation networks, once each (the scores are cached by program key and
checkpointed); the hall of fame is the two best programs seen by validation fitness.
The final programs are then scored on the test tasks (held-out networks and
``--test-store`` stores, none of which may be a train store: :func:`check_test_stores`);
:func:`final_scores` gives train / validation / test tau, and :func:`roundoff_of_saved`
says whether each one's ranking is set by float32 round-off.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from eznas_store.errors import ConfigError, EznasError, ProgramError, RoundoffSkippedWarning
from eznas_store.fitness import Fitness, selection_value
from eznas_store.fitness import Roundoff, roundoff_check

#: programs of each generation scored on the validation networks
VALIDATION_TOP_K = 5


def _value(f: Fitness | None) -> float | None:
    return None if f is None or math.isnan(f.value) else float(f.value)


class ValidationHallOfFame:
    """The ``size`` best programs seen, by validation fitness (ties: the earlier stays)."""

    def __init__(self, scorer, evaluate, saved: Sequence[Any], validation: dict[str, Fitness], *,
                 size: int = 2, k: int = VALIDATION_TOP_K) -> None:
        self.scorer, self.evaluate, self.size, self.k = scorer, evaluate, size, k
        self.validation = validation
        self.items: list = list(saved)
        #: best validation fitness among the last update's candidates (None: none valid)
        self.last_best: float | None = None

    def __iter__(self) -> Iterator:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def score(self, individuals: Sequence[Any]) -> None:
        """Validation fitness of those not scored yet."""
        todo: dict[str, Any] = {}
        for ind in individuals:
            key = self.evaluate.key(ind)
            if key not in self.validation and not key.startswith("invalid:"):
                todo.setdefault(key, self.evaluate.rep.evaluable(self.evaluate.rep.program(ind)))
        if todo:
            fits = self.scorer.fitness_on(list(todo.values()), self.scorer.validation, desc="validation")
            self.validation.update(zip(todo, fits))

    def val(self, ind: Any) -> float:
        f = self.validation.get(self.evaluate.key(ind))
        return -math.inf if f is None else selection_value(f)

    def update(self, individuals: Sequence[Any]) -> None:
        """Score the top ``k`` distinct, not raced-out programs on validation; keep the best."""
        ranked = sorted(individuals, key=lambda i: i.fitness.values[0], reverse=True)  # stable
        top: dict[str, Any] = {}
        for ind in ranked:
            if len(top) >= self.k:
                break
            key = self.evaluate.key(ind)
            if key not in top and not self.evaluate.is_raced(ind):  # invalid ones only when too few valid
                top[key] = ind
        self.score(list(top.values()))
        vals = [self.val(i) for i in top.values()]
        self.last_best = max((v for v in vals if math.isfinite(v)), default=None)
        known = {self.evaluate.key(i) for i in self.items}
        fresh = [copy.deepcopy(ind) for key, ind in top.items() if key not in known]
        self.items = sorted(self.items + fresh, key=self.val, reverse=True)[:self.size]  # stable: ties keep the earlier

    @property
    def best(self) -> float | None:
        vals = [self.val(i) for i in self.items]
        return max((v for v in vals if math.isfinite(v)), default=None)


def final_scores(scorer, evaluate, roles: Sequence[tuple[str, Any]], validation: dict[str, Fitness]) -> dict:
    """{role: {"train", "validation", "test" tau (None where not given or invalid), "test_taus"
    per test task}} for the final programs."""
    out: dict[str, dict] = {}
    programs, keys = [], []
    for role, ind in roles:
        key = evaluate.key(ind)
        out[role] = {"train": _value(ind.record), "validation": None, "test": None, "test_taus": {}}
        try:
            programs.append(evaluate.rep.evaluable(evaluate.rep.program(ind)))
            keys.append((role, key))
        except ProgramError:
            pass
    if scorer.validation and programs:
        missing = [(p, k) for p, (_, k) in zip(programs, keys) if k not in validation]
        if missing:
            fits = scorer.fitness_on([p for p, _ in missing], scorer.validation, desc="validation")
            validation.update(zip((k for _, k in missing), fits))
        for role, key in keys:
            out[role]["validation"] = _value(validation.get(key))
    if scorer.test and programs:
        fits = scorer.fitness_on(programs, scorer.test, desc="test")
        for (role, _), f in zip(keys, fits):
            out[role]["test"] = _value(f)
            out[role]["test_taus"] = {t.name: (None if math.isnan(x) else float(x))
                                      for t, x in zip(scorer.test, f.taus)}
    return out


def roundoff_of_saved(store: str, programs: Sequence[Any], *, accuracy_column: str | None = None,
                      max_networks: int | None = None) -> dict[str, Roundoff]:
    """The saved programs' round-off check (``fitness.roundoff``) on ``store``, by name: a
    program whose ranking is set by float32 round-off is said to be so, since no second copy
    of the statistics (a lossy store, other hardware) keeps its tau. One more scoring of these
    few programs; a check that cannot run (e.g. chunks only a cluster's workers can read) is a
    warning, never a lost run."""
    if not programs:
        return {}
    try:
        found = roundoff_check(store, programs, accuracy_column=accuracy_column, max_networks=max_networks)
    except (EznasError, OSError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        warnings.warn(f"round-off check of the saved programs skipped: {first}", RoundoffSkippedWarning, stacklevel=2)
        return {}
    return {p.name: c for p, c in zip(programs, found)}


#: plan fields that change how a store keeps its networks, not which networks and statistics it holds
_STORAGE_FIELDS = ("codec", "chunk_networks", "proxies", "proxy_batch_size")


def check_test_stores(stores: Sequence[str], test_stores: Sequence[str]) -> None:
    """Refuse a test store that holds a train store's networks and statistics: the same plan
    (the same cells, dataset, batch, seeds and skeleton; codec and chunking aside), as a copy,
    a transcode or another spelling of a train store has. Its tau would be the train tau.
    (The same path or URL is refused earlier, by ``EvolveConfig``.)"""
    if not test_stores:
        return
    from eznas_store.store import open_store

    def content(url: str) -> str:
        ident = {k: v for k, v in open_store(url).plan.identity().items() if k not in _STORAGE_FIELDS}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()

    train = {content(u): u for u in stores}
    for t in test_stores:
        same = train.get(content(t))
        if same is not None:
            raise ConfigError(f"--test-store {t} holds the networks and statistics of the train store {same} "
                              "(the same plan: a copy?): its tau would be the train tau; give a store of other "
                              "networks")
