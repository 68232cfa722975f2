"""docs/API.md against the one table of refusals (app/api/errors.py): every refusal's status
and wording appear in its table, so the page cannot drift from what the service answers."""

from __future__ import annotations

import re

import pytest

from app.api.errors import DECODE_REFUSALS, REFUSALS, refusal_answer
from app.encoder.decode import ImageDecodeError
from app.recognition.uploads import UploadRejected
from tests.support.paths import REPO

API_MD = (REPO / "docs/API.md").read_text()
ROWS = [line for line in API_MD.splitlines() if re.match(r"^\| \d{3} \|", line)]


def documented(status: int, detail: str) -> bool:
    return any(row.startswith(f"| {status} |") and detail in row for row in ROWS)


@pytest.mark.parametrize("kind", list(REFUSALS), ids=lambda kind: kind.__name__)
def test_every_refusal_is_documented_with_its_status(kind: type[Exception]) -> None:
    refusal = REFUSALS[kind]
    status, detail = refusal.status(refusal.example), refusal.detail(refusal.example)
    assert documented(status, detail), f"docs/API.md has no {status} row saying {detail!r}"


@pytest.mark.parametrize("reason", list(DECODE_REFUSALS))
def test_every_reason_an_upload_is_refused_is_documented(reason: str) -> None:
    rejected = UploadRejected("images", 0, ImageDecodeError(reason, "TIFF"))  # type: ignore[arg-type]
    answer = refusal_answer(rejected)
    detail = answer.body.decode().split('"detail":"', 1)[1].rstrip('"}')
    assert documented(answer.status_code, detail), (answer.status_code, detail)
