"""100 MiB of audio goes into the database and comes back identical, without the process holding it in memory.

Measured in a fresh process: its peak resident memory during the round trip, minus its resident memory
just before, must stay under 64 MiB. The peak is Linux's ``VmHWM``, reset just before the round trip
(``/proc/self/clear_refs``). Not ``ru_maxrss``: Linux carries it over ``exec`` from the parent, so a child
of pytest starts with pytest's peak.
"""

from __future__ import annotations

import json
import subprocess
import sys

MIB = 1024 * 1024
SIZE_MIB = 100
LIMIT_MIB = 64

STREAM_SCRIPT = """
import hashlib, io, json, os, sys
from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

url, size_mib = sys.argv[1], int(sys.argv[2])
store = JobStore.from_url(url)
new = NewJob(source=JobSource.UPLOAD, options=TranscribeOptions(model="tiny.en"), filename="big.wav")
# warm up the same code paths on a small job, so imports and pools are not counted as growth
small = store.create_job(new, io.BytesIO(b"w" * 3_000_000))
assert sum(len(chunk) for chunk in store.iter_audio(small.id)) == 3_000_000

sent = hashlib.sha256()

def upload():
    # 64 KiB pieces, as a web server hands them over
    for _ in range(size_mib * 16):
        piece = os.urandom(64 * 1024)
        sent.update(piece)
        yield piece

def status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)

with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # restart the high-water mark (VmHWM) from the current resident size
before = status_kib("VmRSS") * 1024
job = store.create_job(new, upload())
received = hashlib.sha256()
count = 0
for chunk in store.iter_audio(job.id):
    received.update(chunk)
    count += len(chunk)
peak = status_kib("VmHWM") * 1024
print(json.dumps({
    "size": job.size_bytes, "read": count, "stored": store.audio_size(job.id),
    "same": sent.hexdigest() == received.hexdigest(), "growth": peak - before,
}))
"""


def test_100_mib_round_trip_in_bounded_memory(db_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", STREAM_SCRIPT, db_url, str(SIZE_MIB)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    size = SIZE_MIB * MIB
    assert (report["size"], report["read"], report["stored"]) == (size, size, size)
    assert report["same"] is True
    growth_mib = report["growth"] / MIB
    print(f"peak memory growth over a {SIZE_MIB} MiB round trip: {growth_mib:.1f} MiB")
    assert growth_mib < LIMIT_MIB
