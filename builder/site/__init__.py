"""The site description: its model, how it is loaded and its JSON Schema."""

from builder.site.load import DEFAULT_SITE, load_site
from builder.site.model import Node, Role, Site

__all__ = ["DEFAULT_SITE", "Node", "Role", "Site", "load_site"]
