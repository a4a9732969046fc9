"""dist/manifests/: the registered cluster components, gathered and rendered."""
