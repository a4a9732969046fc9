"""Meilisearch's index, rebuilt without a human after it is lost (issue #19 item 5).

Meilisearch keeps its index in an emptyDir (reschedulable.py), so a Meilisearch started
on another server after a node loss, or after any reschedule, is empty: no backend key,
no indexes. A CronJob checks every few minutes whether the index is there and, only when
it is not, runs Tutor's own tasks for it: the backend key (Tutor's init task
`meilisearch.sh`), the indexes (`search.meilisearch.create_indexes()`, as Tutor's lms.sh),
Studio's and the courses' content (`reindex_studio`, `reindex_course --active`, as
Tutor's cms.sh) and, with the forum plugin, the forum's (`initialize_forum_indices`, then
`rebuild_forum_indices`). Every one of them is idempotent.

What says "the index is there" is a marker index, created last, after every command has
succeeded: it lives in Meilisearch's data, so it goes with the index, and a rebuild cut
short is run again. Checking it is one HTTP request from Python, without Django, so a run
that finds it costs a pod start and about a second.

Why a CronJob rather than something the Meilisearch pod's start triggers: it needs no
access to the Kubernetes API (a Job created from inside the cluster would) and no
Open edX image, settings or database flows inside the Meilisearch pod (a sidecar would);
it also retries by itself until the databases are migrated on a first boot.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Mapping
from typing import Any

from builder.cluster.k8s import Document, secret
from builder.render.tutor import INIT_TASKS

NAME = "meilisearch-reindex"
SCRIPT = "reindex.sh"
MOUNT = "/openedx/reindex"
# How soon an emptied Meilisearch is noticed.
SCHEDULE = "*/5 * * * *"
# Created last, under Tutor's prefix (the backend key's scope): "the rebuild finished".
MARKER = "meshseed_reindexed"
# The forum plugin's init task; when it is there, the forum's index is Meilisearch's too.
FORUM_INIT = "initialize_forum_indices"
MISSING = 3

# The master key from the environment (the script's own export), never a command line.
_CLIENT = """
import os, sys, meilisearch
client = meilisearch.Client(os.environ["MEILISEARCH_URL"], os.environ["MEILISEARCH_MASTER_KEY"])
marker = os.environ["MEILISEARCH_MARKER"]
"""
_CHECK = (
    _CLIENT
    + f"""
try:
    client.get_index(marker)
except meilisearch.errors.MeilisearchApiError as error:
    if error.code != "index_not_found":
        raise
    sys.exit({MISSING})
"""
)

_MARK = (
    _CLIENT
    + """
client.wait_for_task(client.create_index(marker).task_uid)
"""
)


def _manage(service: str, command: str) -> str:
    # Each command with its own service's settings, as Tutor runs it in that service's pod.
    return (
        f"SERVICE_VARIANT={service} DJANGO_SETTINGS_MODULE={service}.envs.tutor.production "
        f"./manage.py {service} {command}"
    )


def reindex_script(config: Mapping[str, Any], init: tuple[tuple[str, str], ...]) -> str:
    """The CronJob's script: a cheap check, then Tutor's tasks only when the index is gone."""
    key_task = init[INIT_TASKS.index(("lms", "meilisearch.sh"))][1]
    forum = any(FORUM_INIT in script for _, script in init)
    environment = {
        "MEILISEARCH_URL": config["MEILISEARCH_URL"],
        "MEILISEARCH_MASTER_KEY": config["MEILISEARCH_MASTER_KEY"],
        "MEILISEARCH_MARKER": f"{config['MEILISEARCH_INDEX_PREFIX']}{MARKER}",
    }
    commands = [
        _manage("lms", "shell -c 'import search.meilisearch; search.meilisearch.create_indexes()'"),
        _manage("cms", "reindex_studio"),
        _manage("cms", "reindex_course --active"),
        *((_manage("lms", FORUM_INIT), _manage("lms", "rebuild_forum_indices")) if forum else ()),
    ]
    lines = [
        "# Rebuilds Meilisearch's index when it is gone (builder/render/meilisearch_reindex.py).",
        *(f"export {name}={shlex.quote(str(value))}" for name, value in environment.items()),
        "status=0",
        f"python -c '{_CHECK}' || status=$?",
        'case "$status" in',
        '  0) echo "the index is there: nothing to do"; exit 0 ;;',
        f'  {MISSING}) echo "the index is gone: rebuilding it" ;;',
        '  *) exit "$status" ;;',
        "esac",
        "# Tutor's init task: the backend API key (derived from its uid, so the same again).",
        key_task.strip(),
        *commands,
        f"python -c '{_MARK}'",
        'echo "rebuilt"',
    ]
    return "\n".join(lines) + "\n"


def reindex_cronjob(init_job: Document) -> Document:
    """The init Job's pod (image, settings, hardening, placement) running the script."""
    pod = copy.deepcopy(init_job["spec"]["template"]["spec"])
    (main,) = pod.pop("containers")
    pod.pop("initContainers", None)
    # No env: the admin password is the init Job's (this task creates no user), and the
    # script sets each command's service.
    container = {
        **{k: v for k, v in main.items() if k != "env"},
        "name": "reindex",
        "args": ["sh", "-e", f"{MOUNT}/{SCRIPT}"],
        "volumeMounts": [
            {"name": "reindex", "mountPath": MOUNT, "readOnly": True},
            *(m for m in main["volumeMounts"] if m["name"] != "init"),
        ],
    }
    pod["containers"] = [container]
    pod["restartPolicy"] = "Never"
    pod["volumes"] = [
        {"name": "reindex", "secret": {"secretName": NAME, "defaultMode": 0o555}},
        *(v for v in pod["volumes"] if v["name"] != "init"),
    ]
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "openedx"}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": NAME, "namespace": init_job["metadata"]["namespace"], "labels": labels},
        "spec": {
            "schedule": SCHEDULE,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "spec": {
                    # A failed run (databases not migrated yet) is tried again at the next schedule.
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": 4 * 3600,
                    "template": {"metadata": {"labels": {"app.kubernetes.io/name": NAME}}, "spec": pod},
                }
            },
        },
    }


def reindex_secret(namespace: str, script: str) -> Document:
    """The script holds Meilisearch's master key, so it is a Secret."""
    return secret(NAME, namespace, {SCRIPT: script})
