"""meshseed: a reproducible build pipeline for highly available Open edX clusters."""

__version__ = "0.1.0"
