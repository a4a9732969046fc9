"""The Meilisearch rebuild's script (builder/render/meilisearch_reindex.py), run by the
shell Open edX's image has (dash, as /bin/sh) with `python` and `./manage.py` replaced by
recorders. No Meilisearch server or client is installable here, so the two Python snippets
are checked against meilisearch-python's API as the openedx image ships it and as Tutor's
own init task uses it (meilisearch/errors.py: MeilisearchApiError.code, the API's error
code such as "index_not_found"; Client.get_index, Client.create_index(...).task_uid,
Client.wait_for_task) by reading, not by running: that stays untested here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from builder.render.meilisearch_reindex import MISSING, reindex_cronjob, reindex_script

MASTER_KEY = "master-key-never-on-a-command-line"
CONFIG = {
    "MEILISEARCH_URL": "http://meilisearch:7700",
    "MEILISEARCH_MASTER_KEY": MASTER_KEY,
    "MEILISEARCH_INDEX_PREFIX": "tutor_",
}
KEY_TASK = '# Get or create Meilisearch API key\npython -c "client.get_key(uid)"\n'


def init(forum: bool) -> tuple[tuple[str, str], ...]:
    return (
        ("mysql", "mysql -e 'CREATE DATABASE ...'"),
        ("lms", KEY_TASK),
        ("lms", "./manage.py lms migrate"),
        ("cms", "./manage.py cms migrate"),
        *((("lms", "./manage.py lms initialize_forum_indices"),) if forum else ()),
    )


# Records each call (args=2: just -c and the code, no secret after it); the check
# answers $CHECK_STATUS, a manage.py command named in
# $FAIL fails.
FAKE_PYTHON = """#!/bin/sh
case "$2" in
  *get_index*) what=check; status="$CHECK_STATUS" ;;
  *create_index*) what=mark; status=0 ;;
  *get_key*) what=key; status=0 ;;
  *) what=other; status=1 ;;
esac
echo "python $what args=$# marker=$MEILISEARCH_MARKER key=$MEILISEARCH_MASTER_KEY" >> "$LOG"
exit "$status"
"""
FAKE_MANAGE = """#!/bin/sh
echo "manage $SERVICE_VARIANT $DJANGO_SETTINGS_MODULE $*" >> "$LOG"
case "$*" in *"$FAIL"*) [ -n "$FAIL" ] && exit 1 ;; esac
exit 0
"""


def run(tmp_path: Path, script: str, check_status: int, fail: str = "") -> tuple[int, list[str]]:
    (tmp_path / "bin").mkdir(exist_ok=True)
    for path, text in ((tmp_path / "bin" / "python", FAKE_PYTHON), (tmp_path / "manage.py", FAKE_MANAGE)):
        path.write_text(text)
        path.chmod(0o755)
    (tmp_path / "reindex.sh").write_text(script)
    log = tmp_path / "log"
    log.write_text("")
    result = subprocess.run(
        ["/bin/sh", "-e", tmp_path / "reindex.sh"],
        cwd=tmp_path,
        env={
            "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
            "LOG": str(log),
            "CHECK_STATUS": str(check_status),
            "FAIL": fail,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, log.read_text().splitlines()


def test_an_index_that_is_there_costs_one_check(tmp_path: Path) -> None:
    status, calls = run(tmp_path, reindex_script(CONFIG, init(forum=True)), 0)
    assert status == 0
    assert calls == [f"python check args=2 marker=tutor_meshseed_reindexed key={MASTER_KEY}"]


def test_a_lost_index_is_rebuilt_with_tutors_tasks_then_marked(tmp_path: Path) -> None:
    status, calls = run(tmp_path, reindex_script(CONFIG, init(forum=True)), MISSING)
    assert status == 0
    lms, cms = "lms lms.envs.tutor.production", "cms cms.envs.tutor.production"
    assert calls == [
        f"python check args=2 marker=tutor_meshseed_reindexed key={MASTER_KEY}",
        f"python key args=2 marker=tutor_meshseed_reindexed key={MASTER_KEY}",
        f"manage {lms} lms shell -c import search.meilisearch; search.meilisearch.create_indexes()",
        f"manage {cms} cms reindex_studio",
        f"manage {cms} cms reindex_course --active",
        f"manage {lms} lms initialize_forum_indices",
        f"manage {lms} lms rebuild_forum_indices",
        # Last, and only after everything else succeeded.
        f"python mark args=2 marker=tutor_meshseed_reindexed key={MASTER_KEY}",
    ]


def test_without_the_forum_its_index_is_left_out(tmp_path: Path) -> None:
    _, calls = run(tmp_path, reindex_script(CONFIG, init(forum=False)), MISSING)
    assert not [c for c in calls if "forum" in c]
    assert calls[-1].startswith("python mark")


def test_a_failed_rebuild_is_not_marked_and_runs_again(tmp_path: Path) -> None:
    script = reindex_script(CONFIG, init(forum=True))
    # The first boot: the databases are not migrated yet, so reindex_studio fails.
    status, calls = run(tmp_path, script, MISSING, fail="reindex_studio")
    assert status != 0
    assert not [c for c in calls if c.startswith("python mark")]
    assert calls[-1].endswith("reindex_studio")


def test_meilisearch_unreachable_fails_without_touching_anything(tmp_path: Path) -> None:
    # The check raises (a connection error): exit 1, not "missing".
    status, calls = run(tmp_path, reindex_script(CONFIG, init(forum=True)), 1)
    assert status == 1
    assert calls == [f"python check args=2 marker=tutor_meshseed_reindexed key={MASTER_KEY}"]


def test_our_commands_keep_the_master_key_off_command_lines() -> None:
    script = reindex_script(CONFIG, init(forum=True))
    (key_line,) = [line for line in script.splitlines() if MASTER_KEY in line]
    assert key_line.startswith("export MEILISEARCH_MASTER_KEY=")


def test_the_cronjob_runs_the_script_in_the_init_jobs_pod() -> None:
    init_job = {
        "metadata": {"namespace": "openedx"},
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": "mysql"}],
                    "containers": [
                        {
                            "name": "main",
                            "image": "openedx@sha256:" + "0" * 64,
                            "env": [{"name": "OPENEDX_ADMIN_PASSWORD"}],
                            "volumeMounts": [{"name": "init"}, {"name": "settings-lms"}],
                        }
                    ],
                    "volumes": [{"name": "init"}, {"name": "settings-lms"}],
                }
            }
        },
    }
    cronjob = reindex_cronjob(init_job)
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    (container,) = pod["containers"]
    assert "env" not in container  # no admin password
    assert [m["name"] for m in container["volumeMounts"]] == ["reindex", "settings-lms"]
    assert [v["name"] for v in pod["volumes"]] == ["reindex", "settings-lms"]
    assert init_job["spec"]["template"]["spec"]["containers"][0]["env"]  # the Job is untouched
