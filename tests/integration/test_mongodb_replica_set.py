"""The MongoDB replica set: its setup's decisions, its manifests, Tutor's settings, its alert.

mongod and mongosh are not installable here, so the setup Job's own scripts run under
node (mongosh is a Node.js program) against answers shaped like mongod 7.0's: hello as
src/mongo/db/repl/hello_response.cpp writes it (an uninitiated --replSet member answers
isreplicaset: true without setName), replSetGetConfig / replSetGetStatus as in their
reference pages. What stays untested: mongod itself accepting these commands and this
keyFile, the image entrypoint creating the root user, elections, and pymongo taking
MONGODB_HOST's comma-separated list as seeds.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.integration.generated import Documents, every, manifests, named
from tests.integration.test_alert_rules import promtool_test

__all__ = ["manifests"]  # a fixture
TEMPLATES = REPO / "cloud-init" / "manifests" / "openedx-mongodb"
STAND_IN = Path(__file__).with_name("mongosh_stand_in.js")
NAME = "openedx"
HOSTS = [f"mongodb-{i}.mongodb.openedx.svc.cluster.local:27017" for i in range(3)]
ENV = {
    "REPLICA_SET": NAME,
    "MEMBERS": ",".join(HOSTS),
    "OPENEDX_USER": "openedx",
    "OPENEDX_DATABASES": "openedx,cs_comments_service",
    "MONGODB_ROOT_PASSWORD": "root-pw",
    "MONGODB_OPENEDX_PASSWORD": "openedx-pw",
    "MONGODB_BACKUP_PASSWORD": "backup-pw",
}
COMMON = {
    "maxBsonObjectSize": 16777216,
    "maxMessageSizeBytes": 48000000,
    "maxWriteBatchSize": 100000,
    "logicalSessionTimeoutMinutes": 30,
    "minWireVersion": 0,
    "maxWireVersion": 21,
    "readOnly": False,
    "ok": 1,
}
# hello from a member started with --replSet that has no config yet.
UNINITIATED = {
    **COMMON,
    "isWritablePrimary": False,
    "secondary": False,
    "info": "Does not have a valid replica set config",
    "isreplicaset": True,
}


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed")
    return found


def member_hello(host: str, primary: str, hosts: list[str], set_name: str = NAME) -> dict[str, Any]:
    return {
        **COMMON,
        "hosts": hosts,
        "setName": set_name,
        "setVersion": 1,
        "isWritablePrimary": host == primary,
        "secondary": host != primary,
        "primary": primary,
        "me": host,
    }


def config_of(hosts: list[str], set_name: str = NAME, version: int = 1) -> dict[str, Any]:
    return {
        "_id": set_name,
        "version": version,
        "term": 3,
        "protocolVersion": 1,
        "members": [{"_id": i, "host": h, "priority": 1, "votes": 1} for i, h in enumerate(hosts)],
        "settings": {"electionTimeoutMillis": 10000},
    }


def status_of(hosts: list[str], down: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "set": NAME,
        "myState": 1,
        "ok": 1,
        "members": [
            {
                "_id": i,
                "name": h,
                "health": 0 if h in down else 1,
                "stateStr": "(not reachable/healthy)"
                if h in down
                else ("PRIMARY" if i == 0 else "SECONDARY"),
            }
            for i, h in enumerate(hosts)
        ],
    }


def plan(seen: dict[str, Any], want: dict[str, Any] | None = None) -> dict[str, Any]:
    """planReplicaSet from replica-set.js, run by node."""
    program = (
        f"const lib = require({json.dumps(str(TEMPLATES / 'replica-set.js'))});"
        "const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(lib.planReplicaSet(input.want, input.seen)));"
    )
    payload = json.dumps({"want": want or {"name": NAME, "hosts": HOSTS}, "seen": seen})
    result = subprocess.run(
        [node(), "-e", program], input=payload, capture_output=True, text=True, check=True
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def setup(members: dict[str, Any]) -> dict[str, Any]:
    """setup.js as the Job runs it, with mongosh and the members stood in for."""
    result = subprocess.run(
        [node(), str(STAND_IN), str(TEMPLATES / "setup.js"), str(TEMPLATES / "replica-set.js")],
        input=json.dumps({"env": ENV, "members": members}),
        capture_output=True,
        text=True,
        check=True,
    )
    outcome: dict[str, Any] = json.loads(result.stdout)
    outcome["log"] = result.stderr
    return outcome


def changes(outcome: dict[str, Any]) -> list[tuple[str, str]]:
    """The commands that change the set or its users, with the member they went to."""
    readers = {"hello", "replSetGetConfig", "replSetGetStatus", "getDefaultRWConcern", "usersInfo"}
    return [(sent["command"], sent["host"]) for sent in outcome["sent"] if sent["command"] not in readers]


def formed(hosts: list[str], primary: str = HOSTS[0], users: tuple[str, ...] = ()) -> dict[str, Any]:
    """Members of an initiated set whose config lists `hosts`; the others uninitiated."""
    members: dict[str, Any] = {}
    for host in HOSTS:
        members[host] = {"hello": member_hello(host, primary, hosts) if host in hosts else UNINITIATED}
    members[primary].update(
        config=config_of(hosts),
        status=status_of(hosts),
        rwConcern={"defaultWriteConcern": {"w": "majority"}, "defaultWriteConcernSource": "global", "ok": 1},
        users=list(users),
    )
    return members


# The decisions, case by case.


def test_uninitiated_members_are_initiated_once_with_every_member() -> None:
    decided = plan({"hello": dict.fromkeys(HOSTS, UNINITIATED)})
    assert decided["action"] == "initiate"
    assert decided["on"] == HOSTS[0]
    assert decided["config"] == {"_id": NAME, "members": [{"_id": i, "host": h} for i, h in enumerate(HOSTS)]}


def test_an_initiated_set_with_every_member_is_left_as_it_is() -> None:
    hello = {host: member_hello(host, HOSTS[1], HOSTS) for host in HOSTS}
    assert plan({"hello": hello}) == {
        "action": "read",
        "reason": f"{HOSTS[1]} is the primary",
        "from": HOSTS[1],
    }
    decided = plan({"hello": hello, "config": config_of(HOSTS), "status": status_of(HOSTS)})
    assert decided["action"] == "done"
    assert decided["unhealthy"] == []


def test_a_missing_member_is_added_by_one_reconfig_never_by_initiating_again() -> None:
    hello = {host: member_hello(host, HOSTS[0], HOSTS[:2]) for host in HOSTS[:2]}
    hello[HOSTS[2]] = UNINITIATED
    current = config_of(HOSTS[:2], version=7)
    decided = plan({"hello": hello, "config": current, "status": status_of(HOSTS[:2])})
    assert decided["action"] == "reconfig"
    expected = copy.deepcopy(current)
    expected["version"] = 8
    expected["members"].append({"_id": 2, "host": HOSTS[2]})
    assert decided["config"] == expected


def test_only_one_member_is_added_per_reconfig() -> None:
    hello = {
        HOSTS[0]: member_hello(HOSTS[0], HOSTS[0], HOSTS[:1]),
        HOSTS[1]: UNINITIATED,
        HOSTS[2]: UNINITIATED,
    }
    decided = plan({"hello": hello, "config": config_of(HOSTS[:1]), "status": status_of(HOSTS[:1])})
    assert [m["host"] for m in decided["config"]["members"]] == HOSTS[:2]


@pytest.mark.parametrize("where", ["hello", "config"])
def test_a_member_of_another_replica_set_is_refused(where: str) -> None:
    if where == "hello":
        hello = {host: member_hello(host, HOSTS[0], HOSTS, set_name="rs0") for host in HOSTS}
        decided = plan({"hello": hello})
    else:
        hello = {host: member_hello(host, HOSTS[0], HOSTS) for host in HOSTS}
        decided = plan({"hello": hello, "config": config_of(HOSTS, set_name="rs0")})
    assert decided["action"] == "refuse"
    assert "rs0" in decided["reason"]


def test_a_member_without_replset_is_refused() -> None:
    standalone = {k: v for k, v in UNINITIATED.items() if k not in ("isreplicaset", "info")}
    decided = plan({"hello": {**dict.fromkeys(HOSTS, UNINITIATED), HOSTS[1]: standalone}})
    assert decided["action"] == "refuse"


def test_nothing_is_initiated_while_a_member_is_unreachable() -> None:
    decided = plan({"hello": {**dict.fromkeys(HOSTS, UNINITIATED), HOSTS[2]: None}})
    assert decided["action"] == "wait"
    assert HOSTS[2] in decided["reason"]


def test_an_unreachable_member_of_a_complete_set_is_reported_not_reconfigured() -> None:
    hello = {host: member_hello(host, HOSTS[0], HOSTS) for host in HOSTS[:2]}
    hello[HOSTS[2]] = None
    decided = plan({"hello": hello, "config": config_of(HOSTS), "status": status_of(HOSTS, down=(HOSTS[2],))})
    assert decided["action"] == "done"
    assert decided["unhealthy"] == [HOSTS[2]]


def test_an_unreachable_missing_member_is_waited_for() -> None:
    hello = {host: member_hello(host, HOSTS[0], HOSTS[:2]) for host in HOSTS[:2]}
    hello[HOSTS[2]] = None
    decided = plan({"hello": hello, "config": config_of(HOSTS[:2]), "status": status_of(HOSTS[:2])})
    assert decided["action"] == "wait"


def test_without_a_primary_it_waits() -> None:
    hello = {host: {**member_hello(host, "", HOSTS), "isWritablePrimary": False} for host in HOSTS}
    for answer in hello.values():
        answer.pop("primary")
    assert plan({"hello": hello})["action"] == "wait"


# setup.js as a whole, with the stand-in members.


def test_setup_initiates_sets_majority_and_creates_the_users_then_changes_nothing_on_rerun() -> None:
    first = setup({host: {"hello": UNINITIATED} for host in HOSTS})
    assert first["code"] == 0, first["log"]
    assert changes(first) == [
        ("replSetInitiate", HOSTS[0]),
        ("setDefaultRWConcern", HOSTS[0]),
        ("createUser", HOSTS[0]),
        ("createUser", HOSTS[0]),
    ]
    created = [s["body"] for s in first["sent"] if s["command"] == "createUser"]
    assert created[0]["roles"] == [
        {"role": "readWrite", "db": "openedx"},
        {"role": "readWrite", "db": "cs_comments_service"},
    ]
    assert created[1]["roles"] == [{"role": "backup", "db": "admin"}]
    assert all(body["writeConcern"] == {"w": "majority"} for body in created)
    again = setup(first["members"])
    assert again["code"] == 0, again["log"]
    # Passwords are set again (they follow the build); the set itself is not touched.
    assert changes(again) == [("updateUser", HOSTS[0]), ("updateUser", HOSTS[0])]


def test_setup_adds_a_replaced_member_by_reconfig() -> None:
    outcome = setup(formed(HOSTS[:2], users=("openedx", "backup")))
    assert outcome["code"] == 0, outcome["log"]
    assert [c for c in changes(outcome) if c[0].startswith("replSet")] == [("replSetReconfig", HOSTS[0])]
    assert [m["host"] for m in outcome["members"][HOSTS[0]]["config"]["members"]] == HOSTS


def test_setup_refuses_another_replica_set_with_exit_2_and_changes_nothing() -> None:
    members = {host: {"hello": member_hello(host, HOSTS[0], HOSTS, set_name="rs0")} for host in HOSTS}
    outcome = setup(members)
    assert outcome["code"] == 2
    assert changes(outcome) == []


def test_setup_waits_with_exit_1_while_an_uninitiated_member_is_unreachable() -> None:
    outcome = setup({**{host: {"hello": UNINITIATED} for host in HOSTS}, HOSTS[1]: {"hello": None}})
    assert outcome["code"] == 1
    assert changes(outcome) == []


# The manifests and Tutor's settings.


def statefulset(manifests: dict[str, Documents]) -> dict[str, Any]:
    return named(manifests["openedx-mongodb"], "StatefulSet", "mongodb")


def test_three_members_one_per_server_with_keyfile_auth(manifests: dict[str, Documents]) -> None:
    members = statefulset(manifests)
    spec = members["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 3
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    (mongod,) = pod["containers"]
    args = mongod["args"]
    assert args[args.index("--replSet") + 1] == NAME
    assert args[args.index("--keyFile") + 1] == "/keyfile/keyfile"
    assert "--bind_ip_all" in args and args[-1] == "--ipv6"
    (keyfile,) = [v for v in pod["volumes"] if v["name"] == "keyfile-secret"]
    assert keyfile["secret"]["defaultMode"] == 0o400
    assert pod["securityContext"]["fsGroup"] == 999
    assert mongod["command"][2].startswith(
        "install -m 0400 /keyfile-secret/keyfile /keyfile/keyfile && exec "
    )
    # One member at a time on an image bump, gated by readiness (PRIMARY or SECONDARY).
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert "isWritablePrimary || h.secondary" in mongod["readinessProbe"]["exec"]["command"][-1]
    secret = named(manifests["openedx-mongodb-secrets"], "Secret", "mongodb-credentials")
    assert len(secret["stringData"]["keyfile"]) == 96


def test_tutor_runs_no_mongodb_of_its_own(manifests: dict[str, Documents]) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in manifests["openedx-datastores"]}
    assert not {n for n in names if n[1] == "mongodb"}


def test_setup_job_names_every_member_and_fails_at_once_on_refusal(manifests: dict[str, Documents]) -> None:
    (job,) = [d for d in manifests["openedx-mongodb"] if d["kind"] == "Job"]
    (setup_container,) = job["spec"]["template"]["spec"]["containers"]
    env = {v["name"]: v.get("value") for v in setup_container["env"]}
    assert env["MEMBERS"] == ",".join(HOSTS)
    assert env["REPLICA_SET"] == NAME
    assert all("valueFrom" in v for v in setup_container["env"] if v["name"].endswith("PASSWORD"))
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2]


def settings_text(manifests: dict[str, Documents], name: str) -> str:
    return "\n".join(str(v) for v in named(every(manifests), "Secret", name)["stringData"].values())


@pytest.mark.parametrize("secret", ["openedx-settings-lms", "openedx-settings-cms"])
def test_lms_cms_and_forum_connect_to_the_replica_set(manifests: dict[str, Documents], secret: str) -> None:
    text = settings_text(manifests, secret)
    seeds = ",".join(h.removesuffix(":27017") for h in HOSTS)
    # Tutor's common settings: the modulestore and contentstore.
    assert f'"host": "{seeds}"' in text
    assert '"replicaSet": "openedx"' in text
    assert '"user": "openedx"' in text
    # tutor-forum's, from the same settings.
    assert 'FORUM_MONGODB_CLIENT_PARAMETERS["replicaSet"] = "openedx"' in text
    assert '"username": "openedx"' in text


def test_the_init_job_waits_for_every_member(manifests: dict[str, Documents]) -> None:
    scripts = settings_text(manifests, "openedx-init")
    for host in HOSTS:
        assert f"dockerize -wait tcp://{host} -timeout 20s" in scripts


# The alert.


def rules(manifests: dict[str, Documents]) -> str:
    return str(named(every(manifests), "ConfigMap", "prometheus-config")["data"]["alerts.yml"])


def probe_series(pod: str) -> str:
    labels = (
        f'job="k3s-kubelet-probes",namespace="openedx",container="mongodb",pod="{pod}",'
        'probe_type="Readiness",result="successful"'
    )
    return f"prober_probe_total{{{labels}}}"


def test_mongodb_member_not_healthy_fires_on_a_failing_or_missing_member(
    manifests: dict[str, Documents], tmp_path: Path
) -> None:
    # Probes every 15 s: 4 passes a minute. mongodb-2 stops passing after 10 minutes.
    healthy = [{"series": probe_series(f"mongodb-{i}"), "values": "0+4x60"} for i in range(2)]
    failing = {"series": probe_series("mongodb-2"), "values": "0+4x10 40x50"}
    expected = {"severity": "critical"}
    cases = [
        {
            "interval": "1m",
            "input_series": [*healthy, {"series": probe_series("mongodb-2"), "values": "0+4x60"}],
            "alert_rule_test": [
                {"eval_time": "50m", "alertname": "MongoDBMemberNotHealthy", "exp_alerts": []}
            ],
        },
        {
            "interval": "1m",
            "input_series": [*healthy, failing],
            "alert_rule_test": [
                {"eval_time": "14m", "alertname": "MongoDBMemberNotHealthy", "exp_alerts": []},
                {
                    "eval_time": "25m",
                    "alertname": "MongoDBMemberNotHealthy",
                    "exp_alerts": [
                        {
                            "exp_labels": expected,
                            "exp_annotations": {"summary": "2 of 3 MongoDB members are healthy"},
                        }
                    ],
                },
            ],
        },
        {
            # No member passes at all (every pod gone): the rule still has a value.
            "interval": "1m",
            "input_series": [{"series": 'up{job="k3s-kubelet-probes"}', "values": "1x30"}],
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "MongoDBMemberNotHealthy",
                    "exp_alerts": [
                        {
                            "exp_labels": expected,
                            "exp_annotations": {"summary": "0 of 3 MongoDB members are healthy"},
                        }
                    ],
                }
            ],
        },
    ]
    promtool_test(rules(manifests), cases, tmp_path)
