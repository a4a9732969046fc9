"""The component seam: what a cluster component declares, and the registry of them."""
