"""Signing in cosign's formats: keys (more to come: signatures, attestations)."""
