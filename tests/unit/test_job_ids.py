"""Job ids: UUIDs whose order is the order the jobs were made in."""

from __future__ import annotations


def test_job_ids_are_made_in_order() -> None:
    """Claims and listings order jobs of one millisecond by id: ids made in a row sort in that row."""
    import uuid

    from cesar_common.db.submissions import new_job_id

    made = [new_job_id() for _ in range(5000)]  # several to the millisecond
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {uuid.UUID(job_id).version for job_id in made} == {7}
