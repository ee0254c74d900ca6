"""eznas-store: evolve zero-cost NAS proxies over an on-disk statistics store.

Public entry points: ``open_store`` (read a store), ``score_model`` (score any PyTorch
model with a program or a proxy); the CLI (``eznas-store``) wraps the rest.
"""

from eznas_store._version import __version__

__all__ = ["__version__", "open_store", "score_model"]


def __getattr__(name: str):
    # lazy: importing the package must not import torch/zarr for `eznas-store --help`
    if name == "open_store":
        from eznas_store.store.store import open_store

        return open_store
    if name == "score_model":
        from eznas_store.api import score_model

        return score_model
    raise AttributeError(name)
