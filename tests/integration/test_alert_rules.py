"""The alert rules fire when they should, as Prometheus's own rule tester evaluates them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.integration.generated import Documents, config, manifests
from tests.tools import require

__all__ = ["manifests"]  # a fixture
LMS = "https://learn.campus.example.org/"
STUDIO = "https://studio.campus.example.org/"


def series_name(metric: str, instance: str) -> str:
    return f'{metric}{{job="certificates",instance="{instance}"}}'


def promtool_test(rules: str, cases: list[dict[str, object]], tmp_path: Path) -> None:
    promtool = require("promtool", "prometheus")
    (tmp_path / "alerts.yml").write_text(rules)
    (tmp_path / "tests.yml").write_text(
        yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": cases})
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_certificate_alerts_fire_on_a_failing_probe_and_a_near_expiry(
    manifests: dict[str, Documents], tmp_path: Path
) -> None:
    labels = {"job": "certificates"}
    failing = {**labels, "instance": LMS}
    expiring = {**labels, "instance": STUDIO}
    series = [
        # The LMS probe fails from the start: no expiry series at all.
        {"series": series_name("probe_success", LMS), "values": "0x120"},
        # Studio's answers, with a certificate 10 days from expiry (time() starts at 0).
        {"series": series_name("probe_success", STUDIO), "values": "1x120"},
        {
            "series": series_name("probe_ssl_earliest_cert_expiry", STUDIO),
            "values": f"{10 * 86400}x120",
        },
    ]
    cases = [
        {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "CertificateProbeFailing", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "CertificateProbeFailing",
                    "exp_alerts": [
                        {
                            "exp_labels": {**failing, "severity": "critical"},
                            "exp_annotations": {
                                "summary": f"The HTTPS probe of {LMS} has failed for 15 minutes"
                            },
                        }
                    ],
                },
                {"eval_time": "30m", "alertname": "CertificateExpiresSoon", "exp_alerts": []},
                {
                    "eval_time": "90m",
                    "alertname": "CertificateExpiresSoon",
                    "exp_alerts": [
                        {
                            "exp_labels": {**expiring, "severity": "warning"},
                            "exp_annotations": {
                                "summary": f"The certificate of {STUDIO} expires in under 14 days"
                            },
                        }
                    ],
                },
            ],
        }
    ]
    rules = config(manifests, "prometheus-config", "alerts.yml")
    summaries = yaml.safe_load(rules)
    names = [rule["alert"] for group in summaries["groups"] for rule in group["rules"]]
    assert {"CertificateProbeFailing", "CertificateExpiresSoon"} <= set(names)
    promtool_test(rules, cases, tmp_path)


def _alert(name: str, labels: dict[str, str], summary: str) -> dict[str, object]:
    return {"exp_labels": {**labels, "severity": name}, "exp_annotations": {"summary": summary}}


def test_down_targets_and_the_watchdog(manifests: dict[str, Documents], tmp_path: Path) -> None:
    """NodeDown for nodes, TargetDown for every other job, each after 5 minutes and not
    for a target that answers; Watchdog always."""
    node = {"job": "node", "instance": "[400::1]:9100", "node": "edx1"}
    healthy_node = {"job": "node", "instance": "[400::2]:9100", "node": "edx2"}
    caddy = {"job": "caddy", "instance": "[fd00::5]:9180"}
    alertmanager = {"job": "alertmanager", "instance": "alertmanager.monitoring.svc.cluster.local:9093"}

    def up(labels: dict[str, str], values: str) -> dict[str, str]:
        inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
        return {"series": f"up{{{inner}}}", "values": values}

    cases = [
        {
            "interval": "1m",
            "input_series": [
                up(node, "0x20"),
                up(healthy_node, "1x20"),
                up(caddy, "1x20"),
                # Down for 3 minutes, then back: too short to alert.
                up(alertmanager, "0 0 0 1x17"),
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "NodeDown", "exp_alerts": []},
                {
                    "eval_time": "6m",
                    "alertname": "NodeDown",
                    "exp_alerts": [_alert("critical", node, "Node edx1 has not answered for 5 minutes")],
                },
                # A node is NodeDown's, not TargetDown's; the others answer.
                {"eval_time": "10m", "alertname": "TargetDown", "exp_alerts": []},
                {
                    "eval_time": "0m",
                    "alertname": "Watchdog",
                    "exp_alerts": [_alert("none", {}, "Alerting works: this alert always fires")],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [up(caddy, "0x20"), up(alertmanager, "1x20")],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "TargetDown", "exp_alerts": []},
                {
                    "eval_time": "6m",
                    "alertname": "TargetDown",
                    "exp_alerts": [
                        _alert(
                            "critical", caddy, "caddy target [fd00::5]:9180 has not answered for 5 minutes"
                        )
                    ],
                },
            ],
        },
    ]
    promtool_test(config(manifests, "prometheus-config", "alerts.yml"), cases, tmp_path)


def test_a_missing_couchdb_member_alerts(manifests: dict[str, Documents], tmp_path: Path) -> None:
    """Connected to fewer than all other members for 10 minutes; a full mesh is quiet."""
    members = [f"couchdb-{index}.couchdb.couchdb.svc.cluster.local:17986" for index in range(3)]

    def received(instance: str, peer: int, values: str) -> dict[str, str]:
        labels = f'job="couchdb",instance="{instance}",peer="couchdb@couchdb-{peer}"'
        return {"series": f"couchdb_erlang_distribution_recv_oct_bytes_total{{{labels}}}", "values": values}

    series = [
        # couchdb-0 sees both others; couchdb-1 only one of them (couchdb-2 dropped out).
        received(members[0], 1, "0+10x30"),
        received(members[0], 2, "0+10x30"),
        received(members[1], 0, "0+10x30"),
        *({"series": f'up{{job="couchdb",instance="{m}"}}', "values": "1x30"} for m in members[:2]),
    ]
    cases = [
        {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "CouchDBMemberMissing", "exp_alerts": []},
                {
                    "eval_time": "12m",
                    "alertname": "CouchDBMemberMissing",
                    "exp_alerts": [
                        _alert(
                            "critical",
                            {"instance": members[1]},
                            f"CouchDB member {members[1]} is missing from the cluster's membership",
                        )
                    ],
                },
            ],
        }
    ]
    promtool_test(config(manifests, "prometheus-config", "alerts.yml"), cases, tmp_path)


def backup_series(kind: str, values: str) -> dict[str, str]:
    metric = "meshseed_backup_last_success_timestamp_seconds"
    return {"series": f'{metric}{{job="node",instance="vault",kind="{kind}"}}', "values": values}


def backup_alerts(kinds: list[str]) -> list[dict[str, object]]:
    return [
        {
            "exp_labels": {"kind": kind, "severity": "critical"},
            "exp_annotations": {"summary": f"No successful {kind} backup in the last 26 hours"},
        }
        for kind in kinds
    ]


def test_each_backup_kind_alerts_on_its_own_when_missing_or_too_old(
    manifests: dict[str, Documents], tmp_path: Path
) -> None:
    rules = config(manifests, "prometheus-config", "alerts.yml")
    # The kinds the example site backs up without our backup image pinned (no couchdb).
    kinds = sorted(
        set(re.findall(r'absent\(meshseed_backup_last_success_timestamp_seconds\{kind="(\w+)"\}\)', rules))
    )
    assert kinds == ["garage", "mongodb", "mysql"]
    # A success time that keeps up with the clock (time() starts at 0), sampled each minute.
    fresh = "0+60x1800"
    cases = [
        # Every kind succeeds: nothing fires.
        {
            "interval": "1m",
            "input_series": [backup_series(kind, fresh) for kind in kinds],
            "alert_rule_test": [{"eval_time": "20m", "alertname": "BackupTooOld", "exp_alerts": []}],
        },
        # MySQL succeeds, MongoDB never did: MongoDB alone is missing, after `for:`.
        {
            "interval": "1m",
            "input_series": [backup_series("mysql", fresh), backup_series("garage", fresh)],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "BackupTooOld", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "BackupTooOld", "exp_alerts": backup_alerts(["mongodb"])},
            ],
        },
        # MySQL's last success stays at time 0: too old after 26 hours (and 15 minutes).
        {
            "interval": "1m",
            "input_series": [
                backup_series("mysql", "0x1800"),
                backup_series("mongodb", fresh),
                backup_series("garage", fresh),
            ],
            "alert_rule_test": [
                {"eval_time": "25h", "alertname": "BackupTooOld", "exp_alerts": []},
                {"eval_time": "26h20m", "alertname": "BackupTooOld", "exp_alerts": backup_alerts(["mysql"])},
            ],
        },
        # No backup ever: each kind alerts.
        {
            "interval": "1m",
            "input_series": [],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "BackupTooOld", "exp_alerts": backup_alerts(kinds)},
            ],
        },
    ]
    promtool_test(rules, cases, tmp_path)


def test_redis_without_a_primary_alerts(manifests: dict[str, Documents], tmp_path: Path) -> None:
    """The router's ROLE probe failing for a minute, or missing, fires; a failover that
    ends within the minute (a probe failing for 30 s) does not."""
    router = "redis.openedx.svc.cluster.local:6379"
    probe = f'probe_success{{job="redis-primary",instance="{router}"}}'
    summary = f"Redis has no primary that Open edX can reach ({router})"
    labels = {"job": "redis-primary", "instance": router, "severity": "critical"}
    cases = [
        {
            # A failover: one failed probe at 15 s intervals-ish, here one minute sample.
            "interval": "30s",
            "input_series": [{"series": probe, "values": "1x10 0 1x20"}],
            "alert_rule_test": [{"eval_time": "10m", "alertname": "RedisWithoutPrimary", "exp_alerts": []}],
        },
        {
            "interval": "1m",
            "input_series": [{"series": probe, "values": "1x5 0x10"}],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "RedisWithoutPrimary", "exp_alerts": []},
                {
                    "eval_time": "10m",
                    "alertname": "RedisWithoutPrimary",
                    "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"summary": summary}}],
                },
            ],
        },
        {
            # No probe results at all: the scrape job or blackbox-exporter is gone.
            "interval": "1m",
            "input_series": [{"series": 'up{job="node",instance="[400::1]:9100"}', "values": "1x10"}],
            "alert_rule_test": [
                {
                    "eval_time": "5m",
                    "alertname": "RedisWithoutPrimary",
                    "exp_alerts": [
                        {
                            "exp_labels": {"job": "redis-primary", "severity": "critical"},
                            "exp_annotations": {"summary": summary},
                        }
                    ],
                }
            ],
        },
    ]
    promtool_test(config(manifests, "prometheus-config", "alerts.yml"), cases, tmp_path)
