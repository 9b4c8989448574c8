"""The progress display's plain-line mode (stderr not a TTY): one line per tenth of a counted task, no line lost to
float rounding, nothing when disabled."""

import io

from segdeploy.progress import Progress


def _lines(total: int, enabled: bool = True) -> list[str]:
    buf = io.StringIO()
    prog = Progress(enabled=enabled, stream=buf, tty=False)
    with prog.task("images", total=total, unit="image") as t:
        for _ in range(total):
            t.advance()
    return [ln for ln in buf.getvalue().splitlines() if "images:" in ln and "%" in ln]


def test_a_line_at_every_tenth_including_the_third():
    lines = _lines(20)
    assert [ln.split("(")[1].split("%")[0] for ln in lines] == ["10", "20", "30", "40", "50", "60", "70", "80", "90"]
    assert all("ETA" in ln for ln in lines)


def test_small_totals_print_each_reached_tenth_once():
    assert len(_lines(3)) == 2  # 1/3 and 2/3; the last unit closes the task instead


def test_disabled_prints_nothing():
    assert _lines(20, enabled=False) == []
