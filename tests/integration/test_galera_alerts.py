"""The Galera alert rules, as Prometheus's rule tester evaluates them, on the series the
router publishes (galera-writer.sh; tests/integration/test_galera.py checks them against
real members)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.generated import Documents, config, manifests
from tests.integration.test_alert_rules import promtool_test

__all__ = ["manifests"]  # a fixture
ROUTERS = ("[fd00::a]:9104", "[fd00::b]:9104")
MEMBERS = [f"galera-{i}.galera.openedx.svc.cluster.local:3306" for i in range(3)]


def series(metric: str, router: str, values: str, member: str | None = None) -> dict[str, str]:
    labels = f'job="galera-router",instance="{router}"' + (f',member="{member}"' if member else "")
    return {"series": f"{metric}{{{labels}}}", "values": values}


def test_a_member_missing_for_5_minutes_alerts(manifests: dict[str, Documents], tmp_path: Path) -> None:
    """All three for 10 minutes, then galera-2 is gone: the others see a view of 2."""
    sizes = [
        series("galera_member_cluster_size", router, values, member)
        for router in ROUTERS
        for member, values in zip(MEMBERS, ("3x10 2x20", "3x10 2x20", "3x10 0x20"), strict=True)
    ]
    cases = [
        {
            "interval": "1m",
            "input_series": sizes,
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "GaleraClusterSizeLow", "exp_alerts": []},
                # Gone for 4 minutes: not yet.
                {"eval_time": "14m", "alertname": "GaleraClusterSizeLow", "exp_alerts": []},
                {
                    "eval_time": "17m",
                    "alertname": "GaleraClusterSizeLow",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "critical"},
                            "exp_annotations": {"summary": "The Galera cluster has 2 of 3 members"},
                        }
                    ],
                },
            ],
        }
    ]
    promtool_test(config(manifests, "prometheus-config", "alerts.yml"), cases, tmp_path)


def test_no_writer_alerts_and_one_router_with_a_writer_is_enough(
    manifests: dict[str, Documents], tmp_path: Path
) -> None:
    no_writer = {
        "exp_labels": {"severity": "critical"},
        "exp_annotations": {"summary": "No Galera member can take Open edX's writes"},
    }
    cases = [
        {
            # Both routers lose their writer at 5m.
            "interval": "1m",
            "input_series": [series("galera_writer", router, "1x5 0x10") for router in ROUTERS],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "GaleraNoWriter", "exp_alerts": []},
                {"eval_time": "8m", "alertname": "GaleraNoWriter", "exp_alerts": [no_writer]},
            ],
        },
        {
            # One router still has a writer: the Service reaches it through that one.
            "interval": "1m",
            "input_series": [
                series("galera_writer", ROUTERS[0], "1x15"),
                series("galera_writer", ROUTERS[1], "0x15"),
            ],
            "alert_rule_test": [{"eval_time": "10m", "alertname": "GaleraNoWriter", "exp_alerts": []}],
        },
        {
            # No router answers at all.
            "interval": "1m",
            "input_series": [{"series": 'up{job="node",instance="[400::1]:9100"}', "values": "1x15"}],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "GaleraNoWriter", "exp_alerts": [no_writer]}
            ],
        },
    ]
    promtool_test(config(manifests, "prometheus-config", "alerts.yml"), cases, tmp_path)
