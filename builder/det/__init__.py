"""Deterministic writers: the same value always becomes the same bytes."""
