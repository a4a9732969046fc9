"""Debian packages: archive indexes, dependency closure, .deb unpacking, dpkg status."""
