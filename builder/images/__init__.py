"""Images the project builds itself: from pinned Debian packages, or from a Containerfile."""
