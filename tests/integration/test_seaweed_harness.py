"""The SeaweedFS harness of the object-store tests (tests/seaweed.py) does what they rely on: objects in and
out through boto3, ranged reads, credentials that are checked, and a restart that keeps the objects."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from seaweed import Seaweed, require_weed

DATA = bytes(range(256)) * 40  # 10 KiB


def test_an_object_goes_in_and_comes_back_whole_or_in_part(seaweed: Seaweed, s3_bucket: str) -> None:
    client = seaweed.client()
    client.put_object(Bucket=s3_bucket, Key="audio/a.bin", Body=DATA)
    assert client.get_object(Bucket=s3_bucket, Key="audio/a.bin")["Body"].read() == DATA
    part = client.get_object(Bucket=s3_bucket, Key="audio/a.bin", Range="bytes=1000-1999")
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["ContentRange"] == f"bytes 1000-1999/{len(DATA)}"
    assert part["Body"].read() == DATA[1000:2000]
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="audio/")["Contents"]
    assert [(item["Key"], item["Size"]) for item in listed] == [("audio/a.bin", len(DATA))]


def test_each_test_has_a_bucket_of_its_own(seaweed: Seaweed, s3_bucket: str) -> None:
    assert s3_bucket.startswith("cesar-test-")
    assert seaweed.client().list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_wrong_credentials_are_refused(seaweed: Seaweed, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as refused:
        seaweed.client(secret_key="not-" + seaweed.secret_key).list_objects_v2(Bucket=s3_bucket)
    assert refused.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied"}
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    stranger = boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint,
        aws_access_key_id="someone-else",
        aws_secret_access_key=seaweed.secret_key,
        region_name=seaweed.region,
    )
    with pytest.raises(ClientError) as unknown:
        stranger.list_objects_v2(Bucket=s3_bucket)
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_its_environment_is_all_boto3_needs(
    seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"v")
    assert client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"v"


def test_a_restart_keeps_the_objects_and_the_endpoint(tmp_path: Path) -> None:
    require_weed()
    server = Seaweed(tmp_path / "seaweed")
    try:
        server.start()
        endpoint = server.endpoint
        bucket = server.make_bucket("kept")
        server.client().put_object(Bucket=bucket, Key="audio/kept.bin", Body=DATA)

        server.stop()
        assert not server.running
        port = int(endpoint.rsplit(":", 1)[1])
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
            pass

        server.start()
        assert server.endpoint == endpoint
        got = server.client().get_object(Bucket=bucket, Key="audio/kept.bin", Range="bytes=10-19")
        assert got["Body"].read() == DATA[10:20]
    finally:
        server.stop(graceful=False)
    assert "Start Seaweed S3" in server.log_path.read_text(errors="replace")  # its output kept in its log
