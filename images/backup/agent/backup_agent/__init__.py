"""The meshseed backup agent: dumps, rotates and restores the cluster's data."""

__version__ = "0.1.0"
