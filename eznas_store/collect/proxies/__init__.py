"""The 13 hand-crafted zero-cost proxies of NAS-Bench-Suite-Zero, as NASLib computes them.

Job: score an untrained network with the proxies NAS-Bench-Suite-Zero (Krishnakumar et
al., NeurIPS 2022 Datasets & Benchmarks) published for every cell of several spaces,
computed with NASLib (``naslib/predictors/pruners/measures/*.py``,
``predictors/zerocost.py``), so an evolved EZNAS program can be shown next to them on
the same networks. In: a model (or a factory ``seed -> model`` whose ``forward`` returns
logits), one batch of images and labels, a seed. Out: ``{name: (value, None) or (nan,
reason)}`` per network (a failed proxy is NaN plus a reason, never a magic number where
NASLib writes ``-1e8``), and block-restricted variants rebuilt from EZNAS terminals.

Adding a proxy = one new function in its family module + one registration line in
:mod:`~eznas_store.collect.proxies.registry`. The function takes the state its pass
leaves (see the pass modules) and returns a float; the registration line names it, its
pass, the intermediates it needs and whether it reads labels. Only a proxy that needs a
kind of run no pass makes yet needs a new pass.

Opt-in modern proxies (``registry.MODERN_PROXY_NAMES``: in ``PROXIES``, so
``compute_all(names=[...])``/``compute_proxy`` take them, and ``ingest --proxy NAME`` stores
them, but not in ``PROXY_NAMES``, the default set ingest stores): ``az_nas`` (``az_expressivity``, ``az_progressivity``,
``az_trainability``; ``az_complexity`` shares the ``static`` count; the AZ-NAS score is the
rank aggregate ``az_nas.az_nas_aggregate`` over a table of networks), ``meco``, ``zico``,
``swap`` (``swap``, ``swap_reg``). Each runs its paper's protocol (init, input, batch) in
its own pass (``az_nas``, ``meco``, ``zico``, ``swap``); ``features`` holds their inits and
the per-cell feature maps (forward hooks on the network's ``cells``). Each ``ProxySpec`` says
whether it reads the classifier head (``head_free``), how many batches of the proxy batch it
reads (``batches``: ZiCo 2) and its pass's protocol; ``registry.proxy_card`` is what a store
records of it. Spec and deviations:
``docs/design.md`` §6 and each module's docstring.

VKDNW (``vkdnw``: ``vkdnw``, the entropy of the Fisher spectrum's deciles, and
``vkdnw_tensors``, the parameter-tensor count) is opt-in the same way
(``registry.VKDNW_PROXY_NAMES``; ``registry.OPT_IN_PROXY_NAMES`` lists every opt-in proxy),
its own pass (eval mode, per-sample Jacobian of the logits); its published scores are rank
aggregates over a table: ``vkdnw.vkdnw_single`` and ``vkdnw.vkdnw_aggregate`` (VKDNW_agg).

Modules: ``networks`` (factories per space, fresh copies per pass), ``passes`` (what
every pass shares), the families ``size`` (params, flops, l2_norm), ``nwot``, ``jacobian``
(jacov, epe_nas), ``gradients`` (grad_norm, plain, snip, fisher, grasp), ``synflow``,
``zen``; ``batch_pass`` (the one forward/backward the nwot, jacobian and gradients
families share), ``registry`` (``PROXIES``, ``PROXY_NAMES``), ``runner``
(``compute_all``, ``compute_proxy``), ``blocks`` (block-restricted variants).

NASLib conventions kept (every proxy's docstring says which apply): the network runs in
**train mode** (BatchNorm uses batch statistics), one batch (``split_data=1``), loss
``F.cross_entropy`` on the batch labels; "per-layer" means every ``nn.Conv2d`` and
``nn.Linear`` (stem, shortcut convs and the classifier included), and a per-weight array
is summed over all entries of all layers (``find_measures``'s ``sum_arr``); ``fisher`` is
per channel and NASLib broadcasts each channel's value to the channel's ``C_in·k·k``
weights before summing, kept here; ``synflow`` is reported as ``log`` of the sum
(``ZeroCost.query``; a zero sum stays 0), ``params``/``flops`` in millions as tensorwatch
counts them at batch 1.

Every pass gets a freshly built, freshly initialised network (all with the same init).
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

Example::

    >>> from eznas_store.collect.proxies.networks import nb201_factory     # doctest: +SKIP
    >>> from eznas_store.collect.proxies.runner import compute_all
    >>> factory = nb201_factory("|nor_conv_3x3~0|+|skip_connect~0|none~1|+"
    ...                         "|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    >>> scores = compute_all(factory, batch.images, batch.labels, seed=0)
    >>> scores["synflow"]        # (value, None) or (nan, "why")
"""
