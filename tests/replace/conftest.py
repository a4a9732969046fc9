"""The fake healthy server of the replace tests."""

from tests.replace.fake_cluster import fake_server

__all__ = ["fake_server"]
