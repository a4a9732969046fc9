"""Rendering: Jinja2 templates from cloud-init/ into the files nodes and k3s read."""
