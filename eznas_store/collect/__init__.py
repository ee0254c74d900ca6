"""Collect: run untrained networks of a search space and measure what they do.

Three jobs, one module (or package) each: the 22 EZNAS statistics per block of a network
(:mod:`~eznas_store.collect.statistics`), the 13 hand-crafted zero-cost proxies of
NAS-Bench-Suite-Zero (:mod:`~eznas_store.collect.proxies`), and training labels for
spaces or datasets no benchmark covers (:mod:`~eznas_store.collect.label`, with the loop
in :mod:`~eznas_store.collect.training`).

In: an architecture of a space (or any torch model) and a batch of images (and labels).
Out: per-block statistic tensors, proxy values ``(value, None)`` / ``(nan, reason)``, and
accuracy tables in the NB201 benchmark format. Reads sources/ only; never writes a store.
"""
