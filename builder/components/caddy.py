"""Caddy: TLS edges on every server (hostPort 80/443) and one issuer that gets certificates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import Cluster, Component, Namespace, Rendering, Scrape, SecretSpec
from builder.cluster.digest import digest
from builder.cluster.flows import (
    EDGE,
    EDGE_HOST_PORTS,
    GLOBAL_UNICAST,
    MYCELIUM,
    Addresses,
    Flow,
    Pods,
    to_internet,
)
from builder.cluster.self_signed import self_signed_pem
from builder.render import media
from builder.render.browser_urls import Edge, check_browser_urls
from builder.secrets import Recipe, Scope

NAMESPACE = EDGE.namespace
ISSUER = Pods(NAMESPACE, "caddy-issuer")
# Browsers: anyone on the internet, or on Mycelium reaching a node by its overlay address.
CLIENTS = Addresses((GLOBAL_UNICAST, MYCELIUM))
ACME_DIRECTORY = "acme-v02.api.letsencrypt.org-directory"
# Garage, the store of uploaded files (media.py).
MEDIA = "media"
GARAGE = Pods(MEDIA, "garage")


class Caddy(Component):
    name = "caddy"
    images = ("caddy",)
    namespaces = (
        Namespace(
            NAMESPACE,
            restricted=False,
            privileged_because="caddy-edge takes the nodes' ports 80 and 443 (hostPort), "
            "which the baseline and restricted profiles forbid",
        ),
    )
    ports: ClassVar[Mapping[str, int]] = {
        # Caddy listens unprivileged; the node's 80 and 443 map to these (hostPort).
        "caddy_http": EDGE_HOST_PORTS[80],
        "caddy_https": EDGE_HOST_PORTS[443],
        "caddy_metrics": 9180,
        "certificate": 8444,
        # The edge Caddy's own copies, on ::1 inside its pod.
        "local_certificate": 8445,
        # The same copies, for a new issuer to start from (issuer-seed.sh).
        "copies": 8446,
    }
    files: ClassVar[Mapping[str, str]] = {
        "edge.Caddyfile": "edge.Caddyfile.j2",
        "issuer.Caddyfile": "issuer.Caddyfile.j2",
        "cert-sync.sh": "cert-sync.sh.j2",
        "issuer-seed.sh": "issuer-seed.sh.j2",
    }
    secrets: ClassVar[Mapping[str, SecretSpec]] = {
        # Served by the edges until the issuer's certificate is synced (self_signed.py).
        "edge_fallback_pem": SecretSpec("caddy-edge-fallback", Recipe(Scope.CLUSTER, 32, self_signed_pem)),
    }
    manifests = ("caddy", "caddy-secrets")
    alert_rules = "alerts.yml.j2"
    scrape_configs = "scrape.yml.j2"

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        site, ports = cluster.site, cluster.ports
        issuer = f"caddy-issuer.{NAMESPACE}.svc.cluster.local"
        lms, studio, apps, preview, search, files = site.browser_hosts
        upstreams = {
            "lms": (lms, f"lms.openedx.svc.cluster.local:{ports['openedx']}"),
            "studio": (studio, f"cms.openedx.svc.cluster.local:{ports['openedx']}"),
            "mfe": (apps, f"mfe.openedx.svc.cluster.local:{ports['mfe']}"),
            "preview": (preview, f"lms.openedx.svc.cluster.local:{ports['openedx']}"),
            "meilisearch": (search, f"meilisearch.openedx.svc.cluster.local:{ports['meilisearch']}"),
            # Garage's S3 API; /public-media/ goes to its website endpoint (edge.Caddyfile).
            "files": (files, f"garage.{MEDIA}.svc.cluster.local:{ports['garage_s3']}"),
        }
        return {
            "namespace": NAMESPACE,
            "uid": 1000,
            "http_port": ports["caddy_http"],
            "https_port": ports["caddy_https"],
            "metrics_port": ports["caddy_metrics"],
            "certificate_port": ports["certificate"],
            "storage": "/data",
            "acme_email": f"hostmaster@{site.domain}",
            "acme_directory": ACME_DIRECTORY,
            "issuer_http": f"{issuer}:{ports['caddy_http']}",
            "certificate_url": f"http://{issuer}:{ports['certificate']}/certificate",
            "local_certificate_port": ports["local_certificate"],
            "copies_port": ports["copies"],
            "copies_url": f"http://caddy-edge-copies.{NAMESPACE}.svc.cluster.local:{ports['copies']}/copy",
            # Connections to the edges' copies per name, each to an edge picked at random.
            "seed_tries": 5,
            "certificate_copies": "/certs",
            "fallback_dir": "/fallback",
            "sync_seconds": 300,
            "certificate_min_days": 14,
            "sites": [
                # probe: what blackbox asks for the certificate (Meilisearch and Garage have no page at /).
                {
                    "name": name,
                    "host": host,
                    "upstream": upstream,
                    "probe": f"https://{host}/health"
                    if name in ("meilisearch", "files")
                    else f"https://{host}/",
                    # The public bucket, on Garage's website endpoint, which picks the bucket
                    # by the Host header: /public-media/<key> is that bucket's <key>.
                    "public": {
                        "prefix": f"/{media.PUBLIC_BUCKET}",
                        "bucket": media.PUBLIC_BUCKET,
                        "upstream": f"garage.{MEDIA}.svc.cluster.local:{ports['garage_web']}",
                        "health": f"garage.{MEDIA}.svc.cluster.local:{ports['garage_admin']}",
                    }
                    if name == "files"
                    else None,
                }
                for name, (host, upstream) in upstreams.items()
            ],
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        ports = cluster.ports
        return [
            Flow(
                CLIENTS,
                EDGE,
                (ports["caddy_http"], ports["caddy_https"]),
                "the sites, and ACME's HTTP-01 challenge",
            ),
            Flow(EDGE, Pods("openedx", "lms"), (ports["openedx"],)),
            Flow(EDGE, Pods("openedx", "cms"), (ports["openedx"],)),
            Flow(EDGE, Pods("openedx", "mfe"), (ports["mfe"],)),
            # Course search: the browser asks Meilisearch directly, with a search-only key.
            Flow(EDGE, Pods("openedx", "meilisearch"), (ports["meilisearch"],)),
            # Uploaded files: signed requests to the S3 API, public files from the website endpoint.
            Flow(EDGE, GARAGE, (ports["garage_s3"], ports["garage_web"], ports["garage_admin"])),
            Flow(EDGE, ISSUER, (ports["caddy_http"], ports["certificate"])),
            # A new issuer starts from the edges' copies (issuer-seed.sh).
            Flow(ISSUER, EDGE, (ports["copies"],)),
            # ACME: the issuer asks the CA; the CA's challenge comes back through the nodes.
            *to_internet(ISSUER, (443,), "ACME: the issuer asks the CA"),
        ]

    def scrapes(self, cluster: Cluster) -> list[Scrape]:
        return [Scrape(EDGE, (cluster.ports["caddy_metrics"],))]

    def check(self, rendered: Rendering, manifests: Mapping[str, str]) -> None:
        """Every URL on the site's hosts, in any manifest, is served: DNS, route, certificate."""
        inputs, files = rendered.inputs, rendered.files
        edge = Edge.of(inputs["browser_hosts"], files["edge.Caddyfile"], files["issuer.Caddyfile"])
        check_browser_urls(manifests.values(), inputs["domain"], edge)

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "config_sha256": {
                "edge": digest(files["edge.Caddyfile"], files["cert-sync.sh"]),
                "issuer": digest(files["issuer.Caddyfile"], files["issuer-seed.sh"]),
            }
        }


COMPONENT = Caddy()
