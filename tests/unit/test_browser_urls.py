"""The URL coverage check: a URL on the site's hosts needs DNS, an edge route and a certificate."""

from __future__ import annotations

import pytest

from builder.errors import MeshseedError
from builder.render.browser_urls import Edge, check_browser_urls, site_urls

DOMAIN = "campus.example.org"
EDGE = """\
{
\tadmin off
}

learn.campus.example.org, apps.learn.campus.example.org {
\t@lms host learn.campus.example.org
\thandle @lms {
\t\treverse_proxy lms:8000
\t}
\t@mfe host apps.learn.campus.example.org
\thandle @mfe {
\t\treverse_proxy mfe:8002
\t}
}
"""
ISSUER = """\
{
\temail hostmaster@campus.example.org
}

learn.campus.example.org, apps.learn.campus.example.org {
\trespond 421
}

http://learn.campus.example.org {
\trespond 421
}
"""
SERVED = Edge.of(["learn.campus.example.org", "apps.learn.campus.example.org"], EDGE, ISSUER)


def test_the_caddyfiles_are_read_for_routes_and_certificates() -> None:
    assert SERVED.routes == {"learn.campus.example.org", "apps.learn.campus.example.org"}
    assert SERVED.certificates == {"learn.campus.example.org", "apps.learn.campus.example.org"}


def test_only_urls_on_the_sites_domain_count() -> None:
    text = 'LMS = "https://learn.campus.example.org/x"; DOCS = "https://docs.openedx.org/"; API = "http://lms:8000"'
    assert site_urls([text], DOMAIN) == {"https://learn.campus.example.org/x": "learn.campus.example.org"}


def test_served_urls_pass() -> None:
    check_browser_urls(['MFE = "https://apps.learn.campus.example.org/learning"'], DOMAIN, SERVED)


def test_a_setting_on_a_host_nothing_serves_fails_the_build_naming_it() -> None:
    settings = 'SEARCH = "https://meilisearch.learn.campus.example.org"\nMFE = "https://apps.learn.campus.example.org/"'
    with pytest.raises(MeshseedError) as caught:
        check_browser_urls([settings], DOMAIN, SERVED)
    message = str(caught.value)
    assert (
        "https://meilisearch.learn.campus.example.org: no DNS record, no edge route, no certificate "
        "for meilisearch.learn.campus.example.org"
    ) in message
    assert "apps.learn" not in message
    # A route without a certificate is named for what it lacks.
    partial = Edge(
        SERVED.dns | {"x.campus.example.org"}, SERVED.routes | {"x.campus.example.org"}, SERVED.certificates
    )
    with pytest.raises(
        MeshseedError, match=r"https://x.campus.example.org/: no certificate for x.campus.example.org"
    ):
        check_browser_urls(["https://x.campus.example.org/"], DOMAIN, partial)
