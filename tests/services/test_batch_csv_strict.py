"""`sms-worker batch create` reads a CSV strictly, a row per line, and in bounded memory.

The installed command in a subprocess, on both dialects of a real ledger (read back directly):
one bad line costs its own row and never the rows after it, a file that cannot be a batch is
refused with exit code 2 and leaves nothing behind, and no input makes the import hold more
than a bounded amount.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.cli.batch_cli import SHARED, SMS_WORKER, TEMPLATE, Ledger, number, summary

PEAK_MEMORY_BYTES = 300 * 1024 * 1024
# A safety net, not the measure: an import that ran away fails here rather than take the machine.
ADDRESS_SPACE_LIMIT = 4 * 1024**3


@pytest.fixture
def ledger(ledger_url: str, sessions: sessionmaker[Session]) -> Ledger:
    return Ledger(ledger_url, sessions)


def test_a_stray_quote_costs_its_own_row_only(ledger: Ledger, tmp_path: Path) -> None:
    lines = ["mobile,note"] + [f"{number(n)},ok" for n in range(2, 1001)]
    lines[501] = '+8613700010499,"oops'  # line 502 of 1,000
    file = tmp_path / "list.csv"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = ledger.create(file, *SHARED)

    assert result.returncode == 0, result.stderr
    assert "999 rows, 998 accepted, 1 rejected" in summary(result)
    batch = ledger.only_batch()
    (rejection,) = ledger.rejections(batch["id"])
    assert (rejection["line"], rejection["reason"]) == (502, "malformed")
    assert "not closed on this line" in rejection["detail"]
    assert rejection["row"] == '+8613700010499,"oops'


def test_each_kind_of_malformed_line_is_rejected_with_its_line_and_reason(
    ledger: Ledger, tmp_path: Path
) -> None:
    rows = [
        b"mobile,note",  # 1
        number(1).encode() + b",ok",  # 2
        number(2).encode() + b',"a"b',  # 3: text after a closing quote
        number(3).encode() + b",a\x00b",  # 4: a NUL
        number(4).encode() + b",\xed\xa0\x80",  # 5: a lone surrogate, encoded
        number(5).encode() + b"," * 1000,  # 6: 1,001 fields
        number(6).encode() + b"," + b"x" * (64 * 1024),  # 7: longer than 64 KiB
        number(7).encode() + b',"quoted, with a comma"',  # 8: fine
        number(8).encode() + b",ok",  # 9
        number(9).encode() + b',5" screen',  # 10: a quote inside an unquoted field
    ]
    file = tmp_path / "list.csv"
    file.write_bytes(b"\n".join(rows) + b"\n")

    result = ledger.create(file, *SHARED)

    assert result.returncode == 0, result.stderr
    assert "9 rows, 3 accepted, 6 rejected" in summary(result)
    found = {
        r["line"]: (r["reason"], r["detail"]) for r in ledger.rejections(ledger.only_batch()["id"])
    }
    assert {line: reason for line, (reason, _) in found.items()} == dict.fromkeys(
        (3, 4, 5, 6, 7, 10), "malformed"
    )
    assert "text follows a closing quote" in found[3][1]
    assert "field 2 holds a NUL" in found[4][1]
    assert "field 2 holds a lone surrogate" in found[5][1]
    assert "1,001 fields; a row may have at most 1,000" in found[6][1]
    assert "a row may be at most 65,536" in found[7][1]
    assert "a quote inside an unquoted field" in found[10][1]


def test_the_lines_of_a_field_that_spans_lines_are_not_read_as_recipients(
    ledger: Ledger, tmp_path: Path
) -> None:
    # A note over three lines, the last two of which hold a number: neither is a recipient.
    file = tmp_path / "notes.csv"
    file.write_text(
        f'mobile,note\n{number(1)},"call back\n{number(2)}\n{number(3)}"\n{number(4)},ok\n',
        encoding="utf-8",
    )

    result = ledger.create(file, *SHARED)

    assert result.returncode == 0, result.stderr
    found = ledger.rejections(ledger.only_batch()["id"])
    assert [(r["line"], r["reason"]) for r in found] == [(2, "malformed"), (4, "malformed")]
    assert "may not span lines" in found[0]["detail"]
    assert "a quote inside an unquoted field" in found[1]["detail"]
    # Line 3 holds nothing but a number: by the rule of a row per line, it is one.
    assert "4 rows, 2 accepted, 2 rejected" in summary(result)


def test_bom_crlf_lone_cr_and_blank_lines_are_read(ledger: Ledger, tmp_path: Path) -> None:
    file = tmp_path / "excel.csv"
    data = "\ufeffMobile,Note\r\n" + f"{number(1)},a\r\n\r\n,,\r\n{number(2)},b\r{number(3)},c"
    file.write_bytes(data.encode("utf-8"))

    result = ledger.create(file, *SHARED)

    assert result.returncode == 0, result.stderr
    assert "3 rows, 3 accepted, 0 rejected" in summary(result)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf\r\n\r\n", "the file is empty"),
        (b"mobile,note\r\n", "a header and no rows"),
        (b"mobile,note\n\n,\n", "a header and no rows"),
        (b"mobile,note,Mobile\n+8613700000001,a,b\n", "names the column 'Mobile' twice"),
        (b'mobile,"note\n+8613700000001,a\n', "line 1, the header: a quoted field is not closed"),
    ],
)
def test_a_file_that_cannot_be_a_batch_is_refused_and_leaves_nothing(
    ledger: Ledger, tmp_path: Path, content: bytes, problem: str
) -> None:
    file = tmp_path / "list.csv"
    file.write_bytes(content)

    result = ledger.create(file, *SHARED)

    assert result.returncode == 2, result.stdout + result.stderr
    assert problem in result.stderr
    assert "Traceback" not in result.stderr
    assert ledger.batches() == []


def test_a_file_that_is_not_utf8_names_its_first_bad_line_and_iconv(
    ledger: Ledger, tmp_path: Path
) -> None:
    file = tmp_path / "excel-export.csv"
    text = f"mobile,name\n{number(1)},ok\n{number(2)},张女士\n{number(3)},李\n"
    file.write_bytes(text.encode("gbk"))

    result = ledger.create(file, *SHARED)

    assert result.returncode == 2
    assert "line 3 is not UTF-8 text" in result.stderr
    assert "iconv -f GBK -t UTF-8" in result.stderr
    assert ledger.batches() == []


def test_messages_quote_at_most_200_characters_of_input(ledger: Ledger, tmp_path: Path) -> None:
    long_value = "9" * 5000
    file = tmp_path / "list.csv"
    file.write_text(
        f"mobile,param1\n{long_value},a\n{number(1)},{long_value}\n"
        f'{number(2)},ok\n{number(3)},"{long_value}\n',
        encoding="utf-8",
    )
    result = ledger.create(file)
    assert result.returncode == 0, result.stderr
    rejections = ledger.rejections(ledger.only_batch()["id"])
    assert [(r["line"], r["reason"]) for r in rejections] == [
        (2, "bad_number"), (3, "bad_param"), (5, "malformed"),
    ]  # fmt: skip
    for text in [
        result.stdout,
        *(r["detail"] for r in rejections),
        *(r["row"] for r in rejections),
    ]:
        assert not re.search("9{201}", text), text

    header = tmp_path / "header.csv"
    header.write_text("phone," + "n" * 5000 + "\n+8613700000001,a\n", encoding="utf-8")
    refused = ledger.create(header, *SHARED)
    assert refused.returncode == 2 and "no mobile column" in refused.stderr
    assert not re.search("n{201}", refused.stderr)


def write_repeated(path: Path, head: bytes, piece: bytes, repeat: int, tail: bytes) -> None:
    """``head``, ``piece`` ``repeat`` times, ``tail``: written a few MB at a time."""
    block = piece * max(1, (4 * 1024 * 1024) // len(piece))
    per_block = len(block) // len(piece)
    with path.open("wb") as file:
        file.write(head)
        for start in range(0, repeat, per_block):
            count = min(per_block, repeat - start)
            file.write(block if count == per_block else piece * count)
        file.write(tail)


def peak_memory_of(ledger: Ledger, folder: Path, *args: str) -> tuple[int, str, int]:
    """Run the command; its exit code, error output and peak resident memory in bytes."""

    def limit_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    errors = folder / "stderr.txt"
    with open(os.devnull, "wb") as devnull, errors.open("wb") as error_file:
        child = subprocess.Popen(
            [SMS_WORKER, *args], env=ledger.environment, stdin=subprocess.DEVNULL,
            stdout=devnull, stderr=error_file, preexec_fn=limit_address_space,
        )  # fmt: skip
        # wait4: the resource usage of this one child, its peak resident set among it.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, errors.read_text(errors="replace"), usage.ru_maxrss * 1024


@pytest.mark.parametrize(
    ("name", "head", "piece", "repeat", "tail", "rejected_lines"),
    [
        # One line of 200 MB: ",ab" fields, 70 million of them.
        ("one-huge-line", b"mobile\n+8613700000001\n", b",ab", 70_000_000,
         b"\n+8613700000002\n", 1),
        # 3,200 lines just under 64 KiB, each of some 21,000 fields: parsed, each refused.
        ("many-wide-lines", b"mobile\n+8613700000001\n", (b",ab" * 21_000) + b"\n", 3_200,
         b"+8613700000002\n", 3_200),
        # 100 lines of 2 MB: each read past in chunks.
        ("many-long-lines", b"mobile\n+8613700000001\n", (b"x" * 2_000_000) + b"\n", 100,
         b"+8613700000002\n", 100),
    ],
)  # fmt: skip
def test_peak_memory_stays_bounded_whatever_the_file(
    ledger: Ledger, tmp_path: Path, name: str, head: bytes, piece: bytes, repeat: int,
    tail: bytes, rejected_lines: int,
) -> None:  # fmt: skip
    file = tmp_path / f"{name}.csv"
    write_repeated(file, head, piece, repeat, tail)

    code, errors, peak = peak_memory_of(
        ledger, tmp_path, "batch", "create", str(file), "--template", TEMPLATE, *SHARED
    )

    assert code == 0, errors
    assert peak < PEAK_MEMORY_BYTES, f"{name}: peak {peak / 2**20:.0f} MiB"
    batch = ledger.only_batch()
    assert (batch["total_rows"], batch["accepted"]) == (rejected_lines + 2, 2)
    rejections = ledger.rejections(batch["id"])
    assert len(rejections) == rejected_lines
    assert {r["reason"] for r in rejections} == {"malformed"}
    assert all(len(r["row"]) <= 200 for r in rejections)
