"""Speaker counts that contradict each other are refused by one check (``job_options.check_speakers``) at
every door, naming both values: a 422 from ``POST /transcribe`` (upload and JSON), ``/transcribe/url`` and
``/asr``; one line and exit 1 from ``cesar transcribe`` and ``cesar submit``. No job is made."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import AUDIO_DIR, PUBLIC_URL, Api, job_count, running_api
from click.testing import CliRunner

from cesar.cli import cli
from cesar_common.errors import InvalidInputError
from cesar_common.job_options import TranscribeOptions, check_speakers

#: (num_speakers, min_speakers, max_speakers) and the two values each conflict names
CONFLICTS = [
    ((None, 5, 2), "min_speakers=5 is more than max_speakers=2"),
    ((3, None, 2), "num_speakers=3 is more than max_speakers=2"),
    ((1, 2, None), "num_speakers=1 is fewer than min_speakers=2"),
    ((4, 1, 3), "num_speakers=4 is more than max_speakers=3"),
]
NAMES = ("num_speakers", "min_speakers", "max_speakers")


def counts(values: tuple[int | None, ...]) -> dict[str, int]:
    return {name: value for name, value in zip(NAMES, values, strict=True) if value is not None}


def as_flags(named: str) -> str:
    """``min_speakers=5`` as the command line says it: ``--min-speakers 5``."""
    for name in NAMES:
        named = named.replace(f"{name}=", f"--{name.replace('_', '-')} ")
    return named


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from dbtools import migrate

    url = f"sqlite:///{tmp_path_factory.mktemp('bounds') / 'cesar.db'}"
    migrate(url)
    with running_api(url) as running:
        yield running


@pytest.mark.parametrize(
    "values", [(None, None, None), (2, None, None), (2, 1, 3), (2, 2, 2), (None, 1, 1), (None, 2, None)]
)
def test_counts_that_agree_pass(values: tuple[int | None, ...]) -> None:
    options = TranscribeOptions(model="tiny.en", diarize=True, **counts(values))
    assert check_speakers(options) is options


@pytest.mark.parametrize(("values", "named"), CONFLICTS)
def test_counts_that_contradict_each_other_are_named_as_fields_or_flags(
    values: tuple[int | None, ...], named: str
) -> None:
    options = TranscribeOptions(model="tiny.en", diarize=True, **counts(values))
    with pytest.raises(InvalidInputError) as refused:
        check_speakers(options)
    assert refused.value.message == f"speaker counts that contradict each other: {named}"
    assert refused.value.status_code == 422
    with pytest.raises(InvalidInputError, match=as_flags(named)):
        check_speakers(options, flags=True)


@pytest.mark.parametrize(("values", "named"), CONFLICTS)
def test_every_http_door_answers_422_naming_both(
    api: Api, values: tuple[int | None, ...], named: str
) -> None:
    before = job_count(api.store)
    fields = {"diarize": "true", **{name: str(value) for name, value in counts(values).items()}}
    with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
        answers = [api.client.post("/transcribe", files={"file": ("speech_en.wav", audio)}, data=fields)]
    body = {"url": PUBLIC_URL, "diarize": True, **counts(values)}
    answers.append(api.client.post("/transcribe", json=body))
    answers.append(api.client.post("/transcribe/url", json=body))
    for response in answers:
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == f"speaker counts that contradict each other: {named}"
        assert response.json()["extra"] == dict.fromkeys(NAMES) | counts(values)
    if values[0] is None:  # /asr takes min_speakers and max_speakers only
        query = {"diarize": "true", **counts(values)}
        with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
            response = api.client.post("/asr", params=query, files={"audio_file": ("speech_en.wav", audio)})
        assert response.status_code == 422, response.text
        assert response.json() == {"detail": f"speaker counts that contradict each other: {named}"}
    assert job_count(api.store) == before


@pytest.mark.parametrize(("values", "named"), CONFLICTS)
def test_the_commands_say_it_in_one_line_and_exit_1(
    api: Api, values: tuple[int | None, ...], named: str
) -> None:
    flags = [
        part for name, value in counts(values).items() for part in (f"--{name.replace('_', '-')}", str(value))
    ]
    before = job_count(api.store)
    speech = str(AUDIO_DIR / "speech_en.wav")
    for command in (["transcribe", speech], ["submit", speech, "--server", api.url]):
        result = CliRunner().invoke(cli, [*command, "--diarize", *flags])
        assert result.exit_code == 1, result.output
        assert result.stderr == f"error: speaker counts that contradict each other: {as_flags(named)}\n"
    assert job_count(api.store) == before
