"""Building the index in parser processes: what a script that uses feeds can get wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import MakeSite


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="parser processes start only with two cores or more"
)
def test_a_script_without_a_main_guard_finishes_instead_of_hanging(
    make_site: MakeSite, tmp_path: Path
) -> None:
    """Each parser process imports the script again ("spawn"); a script that opens the site at
    its top level would open it again there and wait for the index its parent is building."""
    config = make_site()
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            import feeds.indexing
            from feeds.site import open_site
            feeds.indexing.PARALLEL_FROM = 0
            site = open_site({str(config)!r}, state_dir=Path({str(tmp_path / "state")!r}))
            print("articles:", site.article_count())
            """
        )
    )
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "articles: " in run.stdout and "articles: 0" not in run.stdout
    assert "if __name__ == '__main__'" in run.stderr  # said once, by the parser process that refused
    assert "parsing in this process" in run.stderr
