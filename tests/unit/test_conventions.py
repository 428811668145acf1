"""File Conventions container names: the .NET library's own test cases.

Ported from Azure/azure-sdk-for-net sdk/batch/Microsoft.Azure.Batch.Conventions.Files/tests/
UnitTests/Utilities/ContainerNameUtilsTests.cs (the InlineData theories verbatim; its FsCheck
properties as checks over every Batch job id shape below), against
src/Utilities/ContainerNameUtils.cs, which node_agent.conventions.job_container follows.
"""

from __future__ import annotations

import random
import re
import string

import pytest

from node_agent.conventions import job_container


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [
        ("job-15", "job-job-15"),
        ("MyTerrificJob", "job-myterrificjob"),
        ("J", "job-j"),
        ("j", "job-j"),
    ],
)
def test_container_name_safe_job_id_generates_simple_container_name(
    job_id: str, expected: str
) -> None:
    assert job_container(job_id) == expected


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [
        ("my_job-bob", "job-my-job-bob-e04620bc2add214df74e158ba60d24273a0e0927"),
        ("-my_job-sam--", "job-my-job-sam-47f54d840815af2592a12213db05f8a8277a098d"),
        (
            "my-_EVEN_MORE_-terrific-job",
            "job-my-even-more-te-68b05a7d8aa6aa65b9a6892c667a6c406a16ad65",
        ),
        ("---", "job-job-58b63e273b964039d6ef432a415df3f177c818e5"),
        ("-_-", "job-job-6fe16b401f95cfcf3aba78023b0a14ef782813e1"),
        ("-", "job-job-3bc15c8aae3e4124dd409035f32ea2fd6835efc9"),
        ("_", "job-job-53a0acfad59379b3e050338bf9f23cfc172ee787"),
        (
            "myverylongjobnameallinonewordreallystartingtogetreallysillynow",
            "job-myverylongjobna-a8700e4947d0c8c621e53b24246aa0349d830e41",
        ),
    ],
)
def test_container_name_unsafe_job_id_generates_transformed_container_name(
    job_id: str, expected: str
) -> None:
    assert job_container(job_id) == expected


# The library's BatchIdGenerator makes ids of letters, digits, '-' and '_' (what Batch
# allows), 1 to 64 characters; the same shapes here, seeded, plus the edge cases by hand.
_ALPHABET = string.ascii_letters + string.digits + "-_"
_rng = random.Random(13)
_IDS = ["".join(_rng.choice(_ALPHABET) for _ in range(_rng.randint(1, 64))) for _ in range(400)] + [
    "-" * 64,
    "_" * 64,
    "a" * 59,
    "a" * 60,
    "a-" * 32,
    "9",
    "a--b",
    "a-",
    "-a",
    "A_B",
]


@pytest.mark.parametrize("job_id", _IDS)
def test_container_names_follow_the_blob_container_rules(job_id: str) -> None:
    # ContainerNameUtilsTests' [Property] checks: starts with a letter or digit; only
    # lowercase letters, digits and dashes; each dash between letters/digits; no '--';
    # 3 to 63 characters
    name = job_container(job_id)
    assert 3 <= len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", name), name


_VALID_IDS = [i.lower() for i in _IDS if re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", i.lower())]


@pytest.mark.parametrize("job_id", [*_VALID_IDS, "a" * 59])
def test_valid_container_names_are_not_munged(job_id: str) -> None:
    # BatchIdThatIsValidContainerName: up to 59 characters (63 - len("job-"))
    if len(job_id) <= 59:
        assert job_container(job_id) == "job-" + job_id
