"""eznas-store: evolve zero-cost NAS proxies over an on-disk statistics store."""

__version__ = "0.1.0"
