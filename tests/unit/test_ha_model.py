"""The node-loss model on small hand-written manifests: each rule it applies, and the
faults it must catch (a single-replica Deployment on a node-bound volume above all)."""

from __future__ import annotations

from typing import Any

import pytest

from builder.errors import MeshseedError
from builder.ha import NodeInfo, Status, Step, UserPath, every_loss, read_cluster, verdict
from builder.ha.gaps import KnownGap
from builder.ha.model import workload_outcome
from builder.site import Role

SERVERS = {"node-role.kubernetes.io/control-plane": "true"}
NODES = (
    NodeInfo("s1", Role.SERVER),
    NodeInfo("s2", Role.SERVER),
    NodeInfo("s3", Role.SERVER),
    NodeInfo("b1", Role.BACKUP),
)


def workload(
    name: str,
    kind: str = "Deployment",
    *,
    replicas: int | None = None,
    spec: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    claims: tuple[str, ...] = (),
    templates: tuple[str, ...] = (),
) -> dict[str, Any]:
    pod = {
        "nodeSelector": dict(SERVERS),
        "containers": [{"name": name, "image": "example.org/x@sha256:" + "0" * 64}],
        "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims],
        **(spec or {}),
    }
    body: dict[str, Any] = {"template": {"metadata": {"labels": {"app": name}}, "spec": pod}}
    if replicas is not None:
        body["replicas"] = replicas
    if templates:
        body["volumeClaimTemplates"] = [{"metadata": {"name": t}, "spec": {}} for t in templates]
    if kind == "CronJob":
        body = {"schedule": "0 2 * * *", "jobTemplate": {"spec": body}}
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "labels": labels or {}},
        "spec": body,
    }


def service(name: str, app: str | None = None, namespace: str = "ns") -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": app or name}},
    }


def claim(name: str, storage_class: str | None = None) -> dict[str, Any]:
    spec = {"storageClassName": storage_class} if storage_class else {}
    return {"kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def spread(app: str, how: str) -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}
    if how == "required":
        return {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}
    preferred = [{"weight": 100, "podAffinityTerm": term}]
    return {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}}


PATH = (UserPath("users", (Step("ns", "app"),)),)


def outcome(documents: list[dict[str, Any]], name: str, lost: str = "s1") -> tuple[Status, str]:
    cluster = read_cluster(documents, NODES)
    found = cluster.workload("ns", name)
    assert found is not None
    result = workload_outcome(found, lost)
    return result.status, result.reason


def test_seeded_fault_single_replica_deployment_on_a_node_bound_claim_fails_the_build() -> None:
    documents = [workload("app", replicas=1, claims=("data",)), claim("data"), service("app")]
    status, reason = outcome(documents, "app")
    assert status is Status.DOWN
    assert "PersistentVolumeClaim data" in reason
    losses = every_loss(read_cluster(documents, NODES), PATH)
    with pytest.raises(MeshseedError) as raised:
        verdict(losses)
    assert "users is down" in str(raised.value)
    assert "ns/Deployment/app" in str(raised.value) or "Deployment/app" in str(raised.value)
    assert "bound to the node that first ran it" in str(raised.value)


def test_more_replicas_on_one_node_bound_claim_are_still_one_copy() -> None:
    documents = [
        workload("app", replicas=3, claims=("data",), spec=spread("app", "preferred")),
        claim("data"),
    ]
    assert outcome(documents, "app")[0] is Status.DOWN


def test_a_replicating_storage_class_follows_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("builder.ha.workloads.REPLICATED_STORAGE_CLASSES", frozenset({"replicated"}))
    documents = [workload("app", replicas=1, claims=("data",)), claim("data", "replicated")]
    assert outcome(documents, "app")[0] is Status.DEGRADED


def test_a_single_reschedulable_replica_is_degraded_until_it_moves() -> None:
    status, reason = outcome([workload("app")], "app")
    assert status is Status.DEGRADED
    assert "rescheduled" in reason


def test_replicas_spread_by_anti_affinity_survive_and_unspread_ones_may_not() -> None:
    for how in ("required", "preferred"):
        status, reason = outcome([workload("app", replicas=3, spec=spread("app", how))], "app")
        assert status is Status.FINE
        assert f"2 of 3 replicas on other nodes keep serving ({how} anti-affinity)" in reason
    # Nothing keeps them apart: all may be on the lost node (they come back elsewhere).
    assert outcome([workload("app", replicas=3)], "app")[0] is Status.DEGRADED
    # Preferred is no promise when there are more replicas than nodes.
    assert (
        outcome([workload("app", replicas=4, spec=spread("app", "preferred"))], "app")[0] is Status.DEGRADED
    )


def test_quorum_needs_a_majority_of_members() -> None:
    quorum = {"meshseed/quorum": "majority"}
    three = workload(
        "db", "StatefulSet", replicas=3, spec=spread("db", "required"), labels=quorum, templates=("d",)
    )
    status, reason = outcome([three], "db")
    assert status is Status.FINE
    assert "2 of 3 members keep a majority" in reason
    assert "waits for its node" in reason
    two = workload(
        "db", "StatefulSet", replicas=2, spec=spread("db", "required"), labels=quorum, templates=("d",)
    )
    status, reason = outcome([two], "db")
    assert status is Status.DOWN
    assert "quorum lost: 1 of 2" in reason
    # Without the label, 2 spread replicas survive the loss of one.
    plain = workload("db", "StatefulSet", replicas=2, spec=spread("db", "required"), templates=("d",))
    assert outcome([plain], "db")[0] is Status.FINE


def test_a_statefulset_member_volume_never_moves() -> None:
    documents = [workload("db", "StatefulSet", replicas=1, templates=("data",))]
    status, reason = outcome(documents, "db")
    assert status is Status.DOWN
    assert "volumeClaimTemplate data" in reason


def test_daemonsets_keep_their_other_nodes() -> None:
    documents = [workload("edge", "DaemonSet")]
    assert outcome(documents, "edge")[0] is Status.FINE
    assert outcome(documents, "edge", lost="b1") == (Status.FINE, "none of its pods can run on b1")


def test_jobs_run_again_on_another_server_unless_pinned_to_one() -> None:
    assert outcome([workload("init", "Job")], "init")[0] is Status.FINE
    pinned = workload("init", "Job", spec={"nodeSelector": {"kubernetes.io/hostname": "s1"}})
    assert outcome([pinned], "init") == (Status.DOWN, "no node but s1 fits it")
    assert outcome([pinned], "init", lost="s2")[0] is Status.FINE
    bound = workload("init", "Job", claims=("scratch",))
    assert outcome([bound, claim("scratch")], "init")[0] is Status.DOWN


def test_the_backup_taint_and_a_static_volume_keep_pods_on_the_backup_node() -> None:
    untolerated = workload("dump", "CronJob", spec={"nodeSelector": {"meshseed/role": "backup"}})
    assert outcome([untolerated], "dump") == (Status.DOWN, "no node fits its pods")
    toleration = [{"key": "meshseed/role", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}]
    anywhere = workload(
        "dump", "CronJob", spec={"nodeSelector": {}, "tolerations": toleration}, claims=("b",)
    )
    volume = {
        "kind": "PersistentVolume",
        "metadata": {"name": "b"},
        "spec": {
            "storageClassName": "local-backup",
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["b1"]}
                            ]
                        }
                    ]
                }
            },
        },
    }
    documents = [anywhere, claim("b", "local-backup"), volume]
    cluster = read_cluster(documents, NODES)
    found = cluster.workload("ns", "dump")
    assert found is not None
    assert found.eligible == ("b1",)
    assert outcome(documents, "dump", lost="s1")[0] is Status.FINE
    assert outcome(documents, "dump", lost="b1")[0] is Status.DOWN


def test_a_path_is_as_bad_as_its_worst_step_capped_by_what_the_step_may_do() -> None:
    documents = [
        workload("app", replicas=3, spec=spread("app", "preferred")),
        service("app"),
        workload("search", replicas=1),
        service("search"),
        workload("mail", replicas=1, claims=("spool",)),
        claim("spool"),
        service("mail"),
    ]
    steps = (
        Step("ns", "app"),
        Step("ns", "search", at_worst=Status.DEGRADED, what="search waits"),
        Step("ns", "mail", at_worst=Status.DEGRADED, what="mail waits"),
    )
    (loss, *_) = every_loss(read_cluster(documents, NODES), (UserPath("users", steps),))
    (path,) = loss.paths
    assert path.status is Status.DEGRADED
    assert "mail waits" in path.reason
    assert "search waits" in path.reason
    assert all("remove the entry" in w for w in verdict([loss]))


def test_a_service_that_selects_nothing_is_down() -> None:
    documents = [workload("app", replicas=3, spec=spread("app", "required")), service("app", app="typo")]
    (loss, *_) = every_loss(read_cluster(documents, NODES), PATH)
    assert loss.paths[0].status is Status.DOWN
    assert "its selector matches no workload" in loss.paths[0].reason


def test_known_gaps_are_shown_and_warned_but_do_not_fail_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    gaps = (
        KnownGap("openedx", "cache", "issue #0: a test gap"),
        KnownGap("openedx", "gone", "issue #0: a gap already closed"),
    )
    monkeypatch.setattr("builder.ha.model.KNOWN_GAPS", gaps)
    monkeypatch.setattr("builder.ha.check.KNOWN_GAPS", gaps)
    documents = [
        workload("cache", replicas=1, claims=("cache",)),
        claim("cache"),
        service("cache", namespace="openedx"),
    ]
    for document in documents:
        document["metadata"]["namespace"] = "openedx"
    path = (UserPath("users", (Step("openedx", "cache"),)),)
    losses = every_loss(read_cluster(documents, NODES), path)
    first = losses[0].paths[0]
    assert first.status is Status.DOWN
    assert first.label == "down (known gap)"
    warnings = verdict(losses)
    assert any("issue #0: a test gap" in w and "openedx/cache" in w for w in warnings)
    # A gap whose Service no longer goes down asks to be removed.
    assert any("openedx/gone as a known gap" in w and "remove the entry" in w for w in warnings)


def test_etcd_needs_a_majority_of_the_servers() -> None:
    documents = [workload("app", replicas=3, spec=spread("app", "required")), service("app")]
    three = every_loss(read_cluster(documents, NODES), PATH)
    assert three[0].workloads[0].reason == "2 of 3 members keep a majority (2 needed)"
    two = every_loss(read_cluster(documents, NODES[1:]), PATH)
    assert two[0].workloads[0].status is Status.DOWN
    assert two[0].paths[0].status is Status.DOWN
    with pytest.raises(MeshseedError, match="etcd"):
        verdict(two)
