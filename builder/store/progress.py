"""How a build reports progress: a rich bar on a terminal, plain lines elsewhere, or nothing."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from builder.store.derivation import Derivation
from builder.store.realise import Result, Status


class SilentProgress:
    """For --json: the summary at the end says everything."""

    def planned(self, total: int, cached: int) -> None:
        pass

    def started(self, derivation: Derivation) -> None:
        pass

    def finished(self, result: Result) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress(SilentProgress):
    """One line per derivation that ran, for logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def planned(self, total: int, cached: int) -> None:
        print(f"{total} derivations, {cached} cached, {total - cached} to build", file=self.stream)

    def finished(self, result: Result) -> None:
        if result.status is not Status.CACHED:
            print(
                f"{result.status:<8} {result.derivation.name} ({result.seconds:.2f}s)",
                file=self.stream,
                flush=True,
            )


class BarProgress(SilentProgress):
    """A progress bar with the derivations in flight, for an interactive terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[running]}"),
            console=self.console,
            transient=False,
        )
        self.task = self.bar.add_task("building", total=None, running="")
        self.running: list[str] = []

    def planned(self, total: int, cached: int) -> None:
        self.bar.update(self.task, total=total)
        self.bar.start()

    def started(self, derivation: Derivation) -> None:
        self.running.append(derivation.name)
        self.bar.update(self.task, running=", ".join(self.running[-3:]))

    def finished(self, result: Result) -> None:
        name = result.derivation.name
        if name in self.running:
            self.running.remove(name)
        if result.status is not Status.CACHED:
            self.bar.console.print(f"[green]{result.status}[/] {name} [dim]({result.seconds:.2f}s)[/]")
        self.bar.update(self.task, advance=1, running=", ".join(self.running[-3:]))

    def close(self) -> None:
        self.bar.stop()


def progress_for(json_output: bool, stream: TextIO = sys.stderr) -> SilentProgress:
    if json_output:
        return SilentProgress()
    return BarProgress(stream) if stream.isatty() else LineProgress(stream)
