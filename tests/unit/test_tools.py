"""External tools are run through one wrapper that names what is missing or what failed."""

from __future__ import annotations

import pytest

from builder.errors import MeshseedError
from builder.tools.run import find, run_tool


def test_a_missing_tool_names_its_package() -> None:
    with pytest.raises(MeshseedError) as caught:
        find("meshseed-no-such-tool", "meshseed-tools")
    assert str(caught.value) == "meshseed-no-such-tool is not installed (apt-get install meshseed-tools)"


def test_a_failing_tool_shows_its_error_and_how_to_rerun(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="meshseed.tools")
    with pytest.raises(MeshseedError) as caught:
        run_tool("sh", ["-c", "echo broken >&2; exit 3"], package="dash")
    assert caught.value.message.endswith("sh failed with exit status 3:\nbroken")
    assert caught.value.hint is not None and "sh -c 'echo broken >&2; exit 3'" in caught.value.hint
    assert any("running: " in record.getMessage() for record in caplog.records)
    assert run_tool("sh", ["-c", "echo fine"], package="dash") == "fine\n"
