"""Open edX: LMS, Studio and their workers, rendered by Tutor and adapted (render/openedx.py).

Tutor renders its datastores together with the apps, so dist/manifests/openedx-datastores.yaml
comes from here too; the openedx-datastores component declares their ports, secrets and
backups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import Cluster, Component, Namespace, Rendering, SecretSpec
from builder.cluster.flows import Flow, Pods, to_internet
from builder.cluster.k8s import Document
from builder.render import openedx, tutor
from builder.secrets import Purpose

NAMESPACE = openedx.NAMESPACE
LMS, CMS, MFE = Pods(NAMESPACE, "lms"), Pods(NAMESPACE, "cms"), Pods(NAMESPACE, "mfe")
# The web apps and their Celery workers: the Open edX code that serves and sends.
APPS = tuple(Pods(NAMESPACE, name) for name in (*openedx.WEB_APPS, *openedx.WORKERS))
# Tutor's init tasks, one Job (render/openedx.py names its pods so).
INIT = Pods(NAMESPACE, "openedx-init")
# Rebuilds Meilisearch's index when it is gone (render/meilisearch_reindex.py).
REINDEX = Pods(NAMESPACE, "meilisearch-reindex")


class OpenEdx(Component):
    name = "openedx"
    images = ("openedx", "mfe")
    namespaces = (Namespace(NAMESPACE, restricted=True),)
    ports: ClassVar[Mapping[str, int]] = {"openedx": 8000, "mfe": 8002}
    secrets: ClassVar[Mapping[str, SecretSpec]] = {
        "openedx_admin_password": SecretSpec.of(Purpose.OPENEDX_ADMIN_PASSWORD),
    }
    files: ClassVar[Mapping[str, str]] = {"openedx-admin.sh": "openedx-admin.sh.j2"}

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        site = cluster.site
        return {
            "namespace": NAMESPACE,
            "platform_name": site.cluster,
            "contact_email": f"contact@{site.domain}",
            "admin_email": f"admin@{site.domain}",
            "mfe_host": site.apps_host,
            "tutor": tutor.TUTOR_VERSION,
            "plugins": list(site.tutor_plugins),
            "images": dict(cluster.tutor_images),
            # Who may send mail through Tutor's relay: every pod (the LMS, Alertmanager).
            "pod_network": str(cluster.networks.pods),
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        port = (cluster.ports["openedx"],)
        return [
            # Studio's single sign-on asks the LMS (http://lms:8000), the apps and workers
            # call each other's APIs, and the MFEs' Caddy asks the LMS for their config.
            *(Flow(client, server, port) for client in APPS for server in (LMS, CMS)),
            Flow(MFE, LMS, port),
            *(
                flow
                for app in APPS
                for flow in to_internet(
                    app,
                    (443,),
                    "LTI tools' keys, YouTube transcripts and other HTTPS services a course may name",
                )
            ),
        ]

    def documents(self, rendering: Rendering) -> dict[str, list[Document]]:
        inputs = rendering.inputs
        rendered = tutor.render(inputs, rendering.deriver)
        rendering.secret_values.update(tutor.secret_values(rendered.config))
        adapted = openedx.adapt(
            rendered,
            servers=len(inputs["servers"]),
            secret_values=sorted({*rendering.secrets.values(), *rendering.secret_values}),
            admin_password=rendering.secrets["openedx_admin_password"],
            pod_network=inputs["openedx"]["pod_network"],
            extra_init=(("lms", rendering.files["openedx-admin.sh"]),),
        )
        return {
            "openedx": adapted.apps,
            "openedx-datastores": adapted.datastores,
            "openedx-init": adapted.init,
            "openedx-secrets": adapted.secrets,
        }


COMPONENT = OpenEdx()
