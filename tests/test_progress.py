"""lvmcore.progress's script listener: a phase reads as two plain lines, its start and its end."""

from __future__ import annotations

import io

from lvmcore.progress import LineProgress, listen, phase


def test_line_progress_writes_a_start_and_an_end_line_per_phase() -> None:
    stream = io.StringIO()
    stop = listen(LineProgress(stream, prefix="ingest"))
    try:
        with phase("exporting", total=2) as step:
            step(0)
            step()
            step()
        with phase("silent"):  # never stepped: only its end is news
            pass
    finally:
        stop()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "ingest: exporting ..." and lines[1].startswith("ingest: exporting: done in ") and lines[1].endswith(" s")
    assert len(lines) == 3 and lines[2].startswith("ingest: silent: done in ")
