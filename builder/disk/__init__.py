"""Bootable disk images: one per node role from pinned Debian packages, one per node with its seed."""
