"""S3ArtifactStore against a real S3-protocol server (moto, over HTTP): every operation of
an ArtifactStore, the keys it builds, multipart uploads, growing logs, leftovers."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import uuid

import pytest

from runyard.errors import NotFound, UserError


def _store(root: str):
    from runyard.artifacts.s3 import S3ArtifactStore

    return S3ArtifactStore(root)


def _keys(server, root: str) -> list[str]:
    bucket = root.removeprefix("s3://").split("/", 1)[0]
    found = server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(item["Key"] for item in found)


def test_stage_commit_open_remove(s3_root, s3_server):
    store = _store(s3_root)
    data = os.urandom(300_000)
    staged, size, digest = store.stage(io.BytesIO(data))
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert _keys(s3_server, s3_root) == [staged]  # only the staging key so far
    store.commit(staged, "run_1", "outputs/model.bin")
    assert _keys(s3_server, s3_root) == ["team/runyard/runs/run_1/outputs/model.bin"]
    assert store.url("run_1", "outputs/model.bin") == s3_root + "/runs/run_1/outputs/model.bin"
    assert store.local_path("run_1", "outputs/model.bin") is None
    with store.open("run_1", "outputs/model.bin") as fh:
        assert fh.read() == data
    with store.open("run_1", "outputs/model.bin") as fh:  # ranged reads
        fh.seek(1000)
        assert fh.read(10) == data[1000:1010]
        assert fh.seek(-5, os.SEEK_END) == len(data) - 5
        assert fh.read() == data[-5:]
        fh.seek(len(data) + 10)
        assert fh.read() == b""
    store.remove("run_1", "outputs/model.bin")
    assert _keys(s3_server, s3_root) == []
    with pytest.raises(NotFound, match="missing"):
        store.open("run_1", "outputs/model.bin")


def test_large_upload_is_multipart(s3_root, s3_server, monkeypatch):
    monkeypatch.setenv("RUNYARD_S3_PART_MB", "5")
    store = _store(s3_root)
    data = os.urandom(20 << 20)
    staged, _, _ = store.stage(io.BytesIO(data))
    store.commit(staged, "run_1", "big.bin")
    bucket = s3_root.removeprefix("s3://").split("/", 1)[0]
    head = s3_server.client().head_object(Bucket=bucket, Key="team/runyard/runs/run_1/big.bin")
    assert head["ETag"].strip('"').endswith("-4")  # four parts of 5 MiB
    with store.open("run_1", "big.bin") as fh:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(data).digest()


def test_part_size_setting_is_checked(s3_root, monkeypatch):
    monkeypatch.setenv("RUNYARD_S3_PART_MB", "1")
    with pytest.raises(UserError, match="at least 5"):
        _store(s3_root)


def test_snapshots(s3_root):
    store = _store(s3_root)
    snapshot = "0123456789abcdef0123456789abcdef"
    staged, _, _ = store.stage(io.BytesIO(b"PK zip"))
    store.put_snapshot(snapshot, staged)
    again, _, _ = store.stage(io.BytesIO(b"PK zip"))
    store.put_snapshot(snapshot, again)  # content-addressed: kept once, the second discarded
    with store.open_snapshot(snapshot) as fh:
        assert not fh.seekable()
        assert fh.read() == b"PK zip"
    with pytest.raises(NotFound):
        store.open_snapshot("f" * 32)
    with pytest.raises(UserError):
        store.open_snapshot("../../x")


def test_a_growing_log_is_seen_growing(s3_root):
    store = _store(s3_root)
    log = store.open_append("run_1", "user_logs/std_log.txt")
    seen: list[int] = []
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            found = store.measure("run_1", "user_logs/std_log.txt")
            if found and (not seen or found[0] != seen[-1]):
                seen.append(found[0])
            time.sleep(0.1)

    reader = threading.Thread(target=follow)
    reader.start()
    written = b""
    for i in range(8):
        line = f"step {i}\n".encode()
        log.write(line)
        log.flush()  # asks for a rewrite; at most one a second
        written += line
        time.sleep(0.4)
    log.close()
    time.sleep(0.3)
    stop.set()
    reader.join()
    assert store.measure("run_1", "user_logs/std_log.txt") == (
        len(written),
        hashlib.sha256(written).hexdigest(),
    )
    assert len(seen) >= 3 and seen == sorted(seen)  # it grew while written, never shrank
    with store.open("run_1", "user_logs/std_log.txt") as fh:
        fh.seek(7)
        assert fh.read() == written[7:]


def test_a_large_log_grows_by_copies_inside_s3(s3_root):
    """Past S3's smallest part a log grows by a multipart upload whose first part is
    copied inside S3: the bytes written so far are not sent again."""
    store = _store(s3_root)
    big = os.urandom(6 << 20)
    log = store.open_append("run_1", "logs/big.txt")
    log.write(big)
    log.close()
    log = store.open_append("run_1", "logs/big.txt")  # reopened: continues at its end
    assert log.tell() == len(big)
    log.write(b"more\n")
    log.close()
    with store.open("run_1", "logs/big.txt") as fh:
        assert fh.read() == big + b"more\n"


@pytest.mark.parametrize(
    "path",
    ["../escape", "a/../../b", "/abs", "a\\b", "a\x00b", "\udcff", "x" * 10_000, "%2e%2e/x", "."],
)
def test_hostile_paths_never_make_a_key(s3_root, s3_server, path):
    store = _store(s3_root)
    staged, _, _ = store.stage(io.BytesIO(b"x"))
    for call in (
        lambda: store.commit(staged, "run_1", path),
        lambda: store.open("run_1", path),
        lambda: store.open_append("run_1", path),
        lambda: store.remove("run_1", path),
        lambda: store.url("run_1", path),
    ):
        with pytest.raises(UserError):
            call()
    for run_id in ("..", "a/b", "", "run 1"):
        with pytest.raises(UserError):
            store.commit(staged, run_id, "ok.txt")
    with pytest.raises(UserError):
        store.commit("team/runyard/runs/other/x", "run_1", "ok.txt")  # not a staged key
    store.discard(staged)
    assert _keys(s3_server, s3_root) == []


def test_a_key_over_s3s_limit_is_refused_clearly(s3_root):
    store = _store(s3_root)
    name = "/".join(["d" * 200] * 6)  # a valid runyard path, too long for an S3 key
    with pytest.raises(UserError, match="too long for S3"):
        store.url("run_1", name)


def test_leftovers_of_dead_uploaders_are_swept(s3_root, s3_server):
    """A staged key or an incomplete multipart upload of a process that died is removed
    when the store is next opened; a live process's are kept."""
    store = _store(s3_root)
    bucket = store.bucket
    client = s3_server.client()
    dead = f"{store._staging}{'0' * 12}-1-1.abc"  # another machine's, and fresh: kept
    mine, _, _ = store.stage(io.BytesIO(b"in progress"))
    gone = f"{store._staging}{mine.rsplit('/', 1)[1].split('-')[0]}-999999-1.x"
    client.put_object(Bucket=bucket, Key=gone, Body=b"left")
    client.put_object(Bucket=bucket, Key=dead, Body=b"foreign, fresh")
    upload = client.create_multipart_upload(Bucket=bucket, Key=gone + "-mp")["UploadId"]
    _store(s3_root)
    keys = _keys(s3_server, s3_root)
    assert mine in keys and dead in keys and gone not in keys
    assert upload not in [
        u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]


def test_bad_roots_are_user_errors(s3_root, s3_server, monkeypatch):
    with pytest.raises(UserError, match="does not name a bucket"):
        _store("s3://")
    with pytest.raises(UserError, match=r"'\.\.'"):
        _store("s3://bucket/a/../b")
    with pytest.raises(NotFound, match="does not exist"):
        _store("s3://no-such-bucket-here/x")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(UserError, match="no AWS credentials"):
        _store(s3_root)


def test_wrong_credentials_are_a_user_error(monkeypatch):
    """A server that checks keys (moto with IAM auth on): an unknown key and a wrong secret
    are refused at open, with what to check; the right key works."""
    import json

    import boto3

    from tests.s3_server import start_moto, stop

    server = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})  # then every call is checked
    try:
        args = {"endpoint_url": server.endpoint, "region_name": "us-east-1"}
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("s3", **args, **keys).create_bucket(Bucket="locked")
        iam = boto3.client("iam", **args, **keys)
        iam.create_user(UserName="runyard")
        policy = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        iam.put_user_policy(
            UserName="runyard",
            PolicyName="s3",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [policy]}),
        )
        key = iam.create_access_key(UserName="runyard")["AccessKey"]
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000")
        with pytest.raises(UserError, match=r"refused the credentials.*InvalidAccessKeyId"):
            _store("s3://locked/runs")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        with pytest.raises(UserError, match="SignatureDoesNotMatch"):
            _store("s3://locked/runs")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        assert _store("s3://locked/runs").root == "s3://locked/runs"
    finally:
        stop(server)


def test_a_large_file_goes_straight_to_its_place_seen_only_once_committed(
    s3_root, s3_server, monkeypatch
):
    monkeypatch.setenv("RUNYARD_S3_PART_MB", "5")
    store = _store(s3_root)
    client = s3_server.client()
    data = os.urandom(12 << 20)
    final = "team/runyard/runs/run_1/outputs/big.bin"
    staged, size, digest = store.stage(io.BytesIO(data), "run_1", "outputs/big.bin")
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    keys = _keys(s3_server, s3_root)
    assert final not in keys and keys == [staged]  # only the marker: nobody sees the file
    uploads = client.list_multipart_uploads(Bucket=store.bucket)["Uploads"]
    assert [u["Key"] for u in uploads] == [final]
    store.commit(staged, "run_1", "outputs/big.bin")
    assert _keys(s3_server, s3_root) == [final]
    assert client.head_object(Bucket=store.bucket, Key=final)["ETag"].strip('"').endswith("-3")
    with store.open("run_1", "outputs/big.bin") as fh:
        assert fh.read() == data
    staged, _, _ = store.stage(io.BytesIO(data), "run_1", "outputs/other.bin")
    store.discard(staged)  # a record that could not be stored: the upload is aborted
    assert _keys(s3_server, s3_root) == [final]
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_the_upload_of_a_dead_process_is_aborted_by_the_next_open(s3_root, s3_server, monkeypatch):
    monkeypatch.setenv("RUNYARD_S3_PART_MB", "5")
    store = _store(s3_root)
    client = s3_server.client()
    staged, _, _ = store.stage(io.BytesIO(os.urandom(6 << 20)), "run_1", "outputs/x.bin")
    # the same marker, as a process of this machine that is gone would have left it
    host = staged.rsplit("/", 1)[1].split("-")[0]
    dead = f"{store._staging}{host}-999999-1.{uuid.uuid4().hex}.upload"
    client.copy_object(
        Bucket=store.bucket, Key=dead, CopySource={"Bucket": store.bucket, "Key": staged}
    )
    client.delete_object(Bucket=store.bucket, Key=staged)
    _store(s3_root)
    assert _keys(s3_server, s3_root) == []
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
