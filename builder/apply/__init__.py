"""`meshseed apply`: make a running cluster match the last build (dist/), node by node,
and upgrade k3s through the same path."""
