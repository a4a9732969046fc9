"""`meshseed apply` from start to end: what dist/ wants, what each node has, the plan,
then (unless --dry-run) the changes; and how to print it all."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.apply.desired import NodeWants, site_wants
from builder.apply.plan import NodePlan, pinned_binary, plan_node
from builder.apply.remote import OnNode
from builder.apply.rollout import Cluster, Outcome, health_problems, roll_out
from builder.apply.versions import parse_version
from builder.errors import MeshseedError, bad_input
from builder.lock import Lock
from builder.secrets import SecretDeriver
from builder.site import Node, Site
from builder.ssh_login import Login, login_to


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    force: bool = False
    timeout: float = 600.0
    node_root: str = ""  # "{node}" in it becomes each node's name (tests only)
    only: tuple[str, ...] = ()  # the nodes to log in to and change; empty: every node


@dataclass
class Report:
    plans: list[NodePlan]
    problems: list[str]
    dry_run: bool
    left_out: list[str] = field(default_factory=list)  # by --only: neither read nor changed
    outcome: Outcome = field(default_factory=Outcome)

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": [plan.as_json() for plan in self.plans],
            "healthy": not self.problems,
            "problems": self.problems,
            "dry_run": self.dry_run,
            "left_out": self.left_out,
            **({} if self.dry_run else self.outcome.as_json()),
        }


def apply(
    site: Site,
    dist: Path,
    lock: Lock,
    login: Login,
    deriver: SecretDeriver,
    *,
    options: Options,
    say: Callable[[str], None],
    show_plan: Callable[[Report], None],
) -> Report:
    wants, left_out = select(site_wants(site, dist), options.only, site.cluster)
    if "k3s" not in lock.binaries:
        raise bad_input("images.lock pins no k3s: lock first (`meshseed lock`), then build")
    pinned = parse_version(lock.k3s_version, "images.lock: k3s.version")
    for node in wants:
        if pinned_binary(node).sha256 != lock.binaries["k3s"].sha256:
            raise bad_input(
                f"{dist}/nodes/{node.node.name}: its seed pins another k3s than images.lock "
                f"({lock.k3s_version})",
                hint="build again, so that dist/ is the build of this images.lock",
            )
    with contextlib.ExitStack() as stack:
        nodes = {
            want.node.name: OnNode(
                want.node.name,
                stack.enter_context(login_to(deriver, want.node, login, shared=True)),
                options.node_root.replace("{node}", want.node.name),
            )
            for want in wants
        }
        # Reading is safe to do on every node at once, and most of it is waiting.
        with ThreadPoolExecutor(max_workers=len(wants)) as pool:
            futures = [pool.submit(plan_node, nodes[want.node.name], want, pinned) for want in wants]
        # The first node's error, in the site's order, whatever finished first.
        plans = [future.result() for future in futures]
        cluster = Cluster(plans, nodes, options.timeout, say, tuple(left_out))
        report = Report(plans, health_problems(cluster), options.dry_run, [node.name for node in left_out])
        show_plan(report)
        if options.dry_run or not any(plan.changes or plan.manifests for plan in plans):
            return report
        if unwatched := [plan.name for plan in plans if plan.drains and not cluster.watcher_for(plan.name)]:
            raise bad_input(
                f"no other server among the nodes applied to can watch {', '.join(unwatched)} "
                "drain and come back",
                hint="add a healthy server to --only",
            )
        if report.problems and not options.force:
            raise MeshseedError(
                "the cluster is not healthy, so apply changes nothing: " + "; ".join(report.problems),
                hint="bring it back first, or apply with --force",
            )
        report.outcome = roll_out(cluster)
    return report


def select(wants: list[NodeWants], only: tuple[str, ...], cluster: str) -> tuple[list[NodeWants], list[Node]]:
    """The nodes to log in to, and the nodes `--only` leaves out (none without it)."""
    if unknown := sorted(set(only) - {want.node.name for want in wants}):
        raise bad_input(
            f"--only names {', '.join(unknown)}, not a node of cluster {cluster}",
            hint=f"the site's nodes: {', '.join(want.node.name for want in wants)}",
        )
    if not only:
        return wants, []
    return [w for w in wants if w.node.name in only], [w.node for w in wants if w.node.name not in only]


def plan_text(report: Report) -> str:
    lines = []
    for plan in report.plans:
        k3s = f"k3s {plan.running}" + (f" -> {plan.pinned}" if plan.upgrade else "")
        head = f"{plan.name} ({plan.wants.node.role.value}, {k3s})"
        if not plan.changes:
            lines.append(f"{head}: no change")
            continue
        restarts = [unit for unit in plan.restarts() if unit != "daemon-reload"]
        how = f"drain, restart {', '.join(restarts)}" if restarts else "no restart"
        lines.append(f"{head}: {len(plan.changes)} change(s), {how}")
        lines += [f"  {change.action} {change.wanted.path}" for change in plan.changes]
    manifests: dict[str, list[str]] = {}
    for plan in report.plans:
        for change in plan.manifests:
            manifests.setdefault(f"{change.action} {change.wanted.path}", []).append(plan.name)
    for what, servers in sorted(manifests.items(), key=lambda item: item[0].split(" ", 1)[1]):
        lines.append(f"manifest: {what} on {', '.join(servers)}")
    if not any(plan.changes or plan.manifests for plan in report.plans):
        lines.append("every node matches dist/")
    if report.left_out:
        lines.append(f"left out (--only): {', '.join(report.left_out)}")
    lines += [f"unhealthy: {problem}" for problem in report.problems]
    return "\n".join(lines) + "\n"
