from __future__ import annotations

from ctxgate.engine import Context
from ctxgate.engine.table import TableCompressor, shape
from tests.engine.decoders import table_cells

T = TableCompressor()


def kubectl(n: int) -> str:
    rows = [f"{'NAME':<26}{'READY':<8}{'STATUS':<19}{'RESTARTS':<11}AGE"]
    for i in range(n):
        status, restarts = ("CrashLoopBackOff", 14) if i == 77 else ("Running", 0)
        rows.append(f"{f'web-{i:04d}-7d9f8c6b5-x2k':<26}{'1/1':<8}{status:<19}{restarts:<11}5d")
    return "\n".join(rows) + "\n"


def test_shapes() -> None:
    assert shape(kubectl(5)).kind == "aligned"  # type: ignore[union-attr]
    assert shape("a,b,c\n1,2,3\n4,5,6\n7,8,9").kind == "csv"  # type: ignore[union-attr]
    assert shape("a\tb\n1\t2\n3\t4").kind == "tsv"  # type: ignore[union-attr]
    ls = "total 8\n-rw-r--r--  1 root root  10 Sep 10 09:22 a\ndrwxr-xr-x  2 root root 4096 Sep 10 09:22 b\n"
    assert shape(ls).kind == "ls"  # type: ignore[union-attr]
    numbered_source = "\n".join(f"{i:6d}\tx = f({i}, y)" for i in range(1, 30))
    assert shape(numbered_source) is None
    code = "\n".join(["def f(a, b):", "    return g(a, b)", "    x = h(1, 2)"] * 5)
    assert shape(code) is None


def test_prose_and_logs_are_not_tables() -> None:
    logs = "\n".join(
        ["ERROR FOUND", *[f"worker {i} started the job number {i * 3} quickly" for i in range(20)]]
    )
    assert shape(logs) is None
    ps = "  PID TTY          TIME CMD\n    1 ?        00:00:01 init\n  242 pts/0    00:00:00 bash\n 1337 pts/0    00:00:00 ps"
    assert shape(ps).kind == "aligned"  # type: ignore[union-attr]


def test_lossless_unpad_keeps_every_cell() -> None:
    text = kubectl(20)
    out = T.compress(text, Context(level="lossless"))
    assert out.transforms == ("table:unpad",)
    assert table_cells(out.text) == table_cells(text)
    assert len(out.text) < len(text)


def test_balanced_keeps_bad_rows_and_marks_gaps() -> None:
    text = kubectl(300)
    out = T.compress(text, Context())
    assert "table:sample" in out.transforms
    assert "CrashLoopBackOff" in out.text and "web-0000" in out.text and "web-0299" in out.text
    assert "of 300 rows omitted" in out.text and out.originals[0].text == text
    assert out.text.split("\n")[0].startswith("NAME\tREADY")


def test_directory_listings_are_never_sampled() -> None:
    rows = [f"-rw-r--r--  1 root root  {i:5d} Sep 10 09:22 file{i}.py" for i in range(200)]
    text = "total 800\n" + "\n".join(rows)
    out = T.compress(text, Context())
    assert all(f"-rw-r--r-- {i} file{i}.py" in out.text.split("\n") for i in range(200))
    lossless = T.compress(text, Context(level="lossless"))
    assert all(f"file{i}.py" in lossless.text for i in range(200)) and not lossless.originals


def test_directory_listings_drop_link_counts_and_times_visibly() -> None:
    files = [f"-rw-r--r--  1 root root {100 * i:5d} Sep 10  2025 module_{i}.py" for i in range(10)]
    text = "\n".join(
        [
            "total 20",
            "drwxr-xr-x  2 root root  4096 Sep 10  2025 .",
            "drwxr-xr-x 12 root root  4096 Mar  9 16:43 ..",
            *files,
            "lrwxrwxrwx  1 root root     7 Sep 10  2025 my file -> setup.py",
        ]
    ) + "\n"
    out = T.compress(text, Context())
    assert out.text.split("\n") == [
        "total 20",
        "[... 13 of 13 entries' link counts and modification times omitted: every entry owned by root root; "
        f"retrieve: {out.originals[0].key}]",
        "drwxr-xr-x 4096 .",
        "drwxr-xr-x 4096 ..",
        *(f"-rw-r--r-- {100 * i} module_{i}.py" for i in range(10)),
        "lrwxrwxrwx 7 my file -> setup.py",
        "",
    ]
    assert out.originals[0].text == text and "table:ls-compact" in out.transforms
    many = [f"-rw-r--r--  1 root root {100 * i:5d} Sep 10  2025 module_{i}.py" for i in range(40)]
    mixed = "\n".join([*many, "lrwxrwxrwx  1 app  staff    7 Sep 10  2025 my file -> setup.py"])
    rows = T.compress(mixed, Context()).text.split("\n")
    assert "-rw-r--r-- root root 900 module_9.py" in rows and "lrwxrwxrwx app staff 7 my file -> setup.py" in rows
    unparsed = text + "ls: cannot access 'x': No such file or directory\n"
    assert "table:ls-compact" not in T.compress(unparsed, Context()).transforms


def test_human_readable_sizes_and_devices_compact_too() -> None:
    rows = [f"-rw-r--r--  1 root root {i}.{i}K Sep 10  2025 module_{i}.py" for i in range(1, 30)]
    text = "total 1.2M\n" + "\n".join([*rows, "crw-rw-rw-  1 root tty  5, 0 Mar  9 16:43 tty"])
    out = T.compress(text, Context()).text.split("\n")
    assert "-rw-r--r-- root root 29.29K module_29.py" in out and "crw-rw-rw- root tty 5,0 tty" in out
