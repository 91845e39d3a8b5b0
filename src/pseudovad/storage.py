"""S3 (boto3): footage in, artifacts out.

Cameras write to a bucket that a training machine reads over flaky links, and footage files are
large, so downloads stream to `<dest>.part` and resume with an HTTP Range request from where the
part stopped (guarded by If-Match, so a replaced object restarts from zero instead of splicing
two versions). botocore's standard retry mode handles throttling and 5xx on every call; our own
loop handles a stream that dies mid-body, which botocore cannot retry.

Credentials come only from the standard AWS chain (environment, profile, instance role): never
from params, never written anywhere. Every message that leaves this module goes through
`redact`, so a secret in the environment or in an endpoint URL cannot reach a log or a terminal.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import boto3
import boto3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectionError as BotoConnectionError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from pseudovad.errors import StorageError

log = logging.getLogger(__name__)

CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
CHUNK = 1 << 20
# Errors after which a download can resume from the bytes already on disk.
TRANSIENT = (ResponseStreamingError, ReadTimeoutError, ConnectionClosedError, IncompleteReadError,
             BotoConnectionError, ConnectionError, TimeoutError)
TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
                   "RequestTimeout", "RequestTimeTooSkewed", "Throttling", "ThrottlingException"}
_MD5 = re.compile(r"^[0-9a-f]{32}$")


def redact(text: str) -> str:
    """Remove credential values, URL passwords and request signatures from a message."""
    text = str(text)
    for name in CREDENTIAL_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@", r"\1***@", text)
    text = re.sub(r"(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s]+", r"\1***", text, flags=re.I)
    text = re.sub(r"(Credential=|Signature=)[^,\s]+", r"\1***", text)
    return text


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise StorageError(f"{redact(uri)}: not an s3:// URI")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise StorageError(f"{redact(uri)}: no bucket name")
    return bucket, prefix


def resolve_endpoint(configured: Optional[str]) -> Optional[str]:
    """AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (the SDK's own variables) win over params."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or configured or None


def resolve_region(configured: Optional[str]) -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or configured or "us-east-1"


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str

    @property
    def md5(self) -> Optional[str]:
        """The content MD5 when the ETag is one (single-part uploads without SSE-KMS)."""
        tag = self.etag.strip('"').lower()
        return tag if _MD5.match(tag) else None


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str
    resumed_from: int          # bytes already on disk from an earlier, interrupted download


def digests(path: Path) -> tuple[str, str]:
    """(md5, sha256) in one read: md5 checks the ETag, sha256 is the content identity."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


class S3:
    """One bucket on one endpoint. `max_attempts` bounds both botocore's and our resume retries."""

    def __init__(self, bucket: str, endpoint_url: Optional[str] = None, region: Optional[str] = None,
                 max_attempts: int = 5, backoff: float = 0.5, client=None):
        self.bucket = bucket
        self.endpoint_url = resolve_endpoint(endpoint_url)
        self.region = resolve_region(region)
        self.max_attempts = max(1, int(max_attempts))
        self.backoff = backoff
        # total_max_attempts counts the first try (botocore's `max_attempts` counts only retries)
        self.client = client or boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            config=BotoConfig(retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
                              connect_timeout=10, read_timeout=60))

    @classmethod
    def from_config(cls, storage, bucket: Optional[str] = None) -> "S3":
        """From `cfg.storage`; `bucket` overrides storage.bucket (e.g. from an s3:// source URI)."""
        name = bucket or storage.bucket
        if not name:
            raise StorageError("storage.bucket: not set (give an s3:// URI or set storage.bucket)")
        return cls(name, storage.endpoint_url, storage.region, getattr(storage, "max_attempts", 5))

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    # ------------------------------------------------------------------------------------------
    def error(self, exc: BaseException, key: str = "") -> StorageError:
        """One clear line for what a user can fix: missing bucket, refused credentials, no endpoint."""
        where = self.uri(key)
        endpoint = self.endpoint_url or "AWS"
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket",) or (code == "404" and not key):
                msg = f"s3://{self.bucket}: bucket does not exist on {endpoint}"
            elif code in ("NoSuchKey", "404"):
                msg = f"{where}: no such object"
            elif code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                          "ExpiredToken", "InvalidToken", "AllAccessDisabled") or status == 403:
                msg = (f"{where}: access denied ({code}); check the AWS credentials in the environment "
                       "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE)")
            elif status and status >= 500:
                msg = (f"{where}: S3 service error {code or status} ({err.get('Message', '')}) "
                       f"after {self.max_attempts} attempts")
            else:
                msg = f"{where}: S3 error {code or status}: {err.get('Message', '')}".rstrip(": ")
        elif isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            msg = (f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                   "or AWS_PROFILE)")
        elif isinstance(exc, (EndpointConnectionError, BotoConnectionError, ConnectionError)):
            msg = f"{where}: endpoint {endpoint} unreachable ({type(exc).__name__})"
        elif isinstance(exc, BotoCoreError):
            msg = f"{where}: {exc}"
        else:
            msg = f"{where}: {type(exc).__name__}: {exc}"
        return StorageError(redact(" ".join(msg.split())))

    def check(self) -> None:
        """Fail early, with the reason, if the bucket is missing or unreadable."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as e:
            raise self.error(e) from None

    def list(self, prefix: str = "") -> list[S3Object]:
        """Every object under `prefix`, all pages, in key order."""
        out: list[S3Object] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for o in page.get("Contents", []):
                    if not o["Key"].endswith("/"):
                        out.append(S3Object(o["Key"], int(o["Size"]), o.get("ETag", "").strip('"')))
        except (ClientError, BotoCoreError) as e:
            raise self.error(e, prefix) from None
        return sorted(out, key=lambda o: o.key)

    def head(self, key: str) -> S3Object:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as e:
            raise self.error(e, key) from None
        return S3Object(key, int(r["ContentLength"]), r.get("ETag", "").strip('"'))

    # ------------------------------------------------------------------------------------------
    def download(self, obj: S3Object | str, dest: str | Path,
                 on_bytes: Optional[Callable[[int], None]] = None) -> Downloaded:
        """Stream an object to `dest` via `<dest>.part`, resuming an earlier partial download.

        The part is renamed into place only after its size matches the object and, when the ETag
        is an MD5, its MD5 matches too; a part that fails the check is discarded and fetched again.
        """
        if isinstance(obj, str):
            obj = self.head(obj)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        first = part.stat().st_size if part.exists() else 0
        last: Optional[BaseException] = None
        md5_ok = True
        for attempt in range(1, self.max_attempts + 1):
            have = part.stat().st_size if part.exists() else 0
            if have > obj.size:
                part.unlink()
                have = 0
            try:
                if have < obj.size:
                    md5_ok = self._fetch_range(obj, part, have, on_bytes)
                elif not part.exists():
                    part.touch()
                size = part.stat().st_size
                md5, sha = digests(part)
                if size != obj.size or (obj.md5 and md5_ok and md5 != obj.md5):
                    part.unlink()
                    raise _Corrupt(f"got {size} bytes (md5 {md5}), object has {obj.size} (ETag {obj.etag})")
                os.replace(part, dest)
                return Downloaded(dest, size, sha, first)
            except _Restart as e:
                part.unlink(missing_ok=True)
                first = 0
                last = e
                continue
            except (_Corrupt, *TRANSIENT) as e:
                last = e
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                if code not in TRANSIENT_CODES:
                    raise self.error(e, obj.key) from None
                last = e
            except BotoCoreError as e:
                raise self.error(e, obj.key) from None
            if attempt < self.max_attempts:
                delay = min(self.backoff * 2 ** (attempt - 1), 10.0)
                log.info("%s: %s; retrying from byte %d in %.1fs (attempt %d/%d)", self.uri(obj.key),
                         redact(type(last).__name__), part.stat().st_size if part.exists() else 0,
                         delay, attempt + 1, self.max_attempts)
                time.sleep(delay)
        raise StorageError(redact(f"{self.uri(obj.key)}: download failed after {self.max_attempts} attempts "
                                  f"({type(last).__name__}: {last}); rerun to resume from {part}"))

    def _fetch_range(self, obj: S3Object, part: Path, start: int,
                     on_bytes: Optional[Callable[[int], None]]) -> bool:
        """Append the object's bytes from `start` to `part`; True if its ETag is its MD5.

        (With SSE-KMS or customer-key encryption the ETag is not the content MD5.)
        """
        kwargs = {"Bucket": self.bucket, "Key": obj.key}
        if obj.etag:
            kwargs["IfMatch"] = obj.etag
        if start:
            kwargs["Range"] = f"bytes={start}-"
        try:
            r = self.client.get_object(**kwargs)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "InvalidRange", "416"):
                log.info("%s changed since the partial download; starting again", self.uri(obj.key))
                raise _Restart() from None
            raise
        if start and r.get("ResponseMetadata", {}).get("HTTPStatusCode") != 206:
            raise _Restart()  # the server ignored Range: appending would corrupt the file
        body = r["Body"]
        try:
            with open(part, "ab") as f:
                for chunk in body.iter_chunks(CHUNK):
                    f.write(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
        finally:
            body.close()
        return not (str(r.get("ServerSideEncryption", "")).startswith("aws:kms") or r.get("SSECustomerAlgorithm"))

    # ------------------------------------------------------------------------------------------
    def upload(self, src: str | Path, key: str, part_size: int = 8 << 20) -> S3Object:
        """Upload a file with boto3's managed transfer (multipart above `part_size`, parts retried)."""
        src = Path(src)
        cfg = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size, use_threads=True)
        try:
            self.client.upload_file(str(src), self.bucket, key, Config=cfg)
        except (ClientError, BotoCoreError) as e:
            raise self.error(e, key) from None
        except boto3.exceptions.S3UploadFailedError as e:
            raise StorageError(redact(f"{self.uri(key)}: upload of {src} failed: {e}")) from None
        return self.head(key)

    def upload_dir(self, src: str | Path, prefix: str) -> list[S3Object]:
        src = Path(src)
        return [self.upload(f, f"{prefix.rstrip('/')}/{f.relative_to(src).as_posix()}")
                for f in sorted(src.rglob("*")) if f.is_file()]


class _Restart(Exception):
    """The partial file cannot be continued (object replaced, Range ignored): start from zero."""

    def __str__(self) -> str:
        return "object changed during download or the server ignored the Range request"


class _Corrupt(Exception):
    """The finished file does not match the object's size or MD5."""


# ----------------------------------------------------------------------------------------------
# DVC remote on S3

def dvc_executable() -> str:
    """The `dvc` next to this interpreter (the project's venv), else the one on PATH."""
    import shutil
    import sys

    here = Path(sys.executable).parent / "dvc"
    found = str(here) if here.exists() else shutil.which("dvc")
    if not found:
        raise StorageError("dvc: command not found (install the project's environment: make venv)")
    return found


def configure_dvc_remote(cfg, repo: str | Path = ".", name: str = "storage") -> dict:
    """Make `dvc push` / `dvc pull` use S3: URL and region in .dvc/config, endpoint in config.local.

    The URL (storage.dvc_remote, else s3://<storage.bucket>/dvc) is the same for everyone, so it
    goes in the committed project config. The endpoint often differs per machine (a laptop through
    a tunnel, a pod through the cluster's service name), so it goes in the untracked
    .dvc/config.local. Credentials are written nowhere: dvc-s3 reads the same AWS chain as boto3.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    repo = Path(repo)
    if not (repo / ".dvc").is_dir():
        raise StorageError(f"{repo.resolve()}: not a DVC repository (run `dvc init` there first)")
    st = cfg.storage
    url = st.dvc_remote or (f"s3://{st.bucket}/dvc" if st.bucket else None)
    if not url:
        raise StorageError("storage.dvc_remote: not set (s3://bucket/path for DVC data; or set storage.bucket)")
    parse_s3_uri(url)
    endpoint = resolve_endpoint(st.endpoint_url)
    region = resolve_region(st.region)
    # = dvc remote add --force --default NAME URL; dvc remote modify NAME region …;
    #   dvc remote modify --local NAME endpointurl …  (DVC's own config API, no subprocesses)
    try:
        r = Repo(str(repo))
        try:
            with r.config.edit("repo") as conf:
                conf["remote"][name] = {"url": url, "region": region}
                conf["core"]["remote"] = name
            with r.config.edit("local") as conf:
                local = dict(conf["remote"].get(name, {}))
                local.pop("endpointurl", None)
                if endpoint:
                    local["endpointurl"] = endpoint
                if local:
                    conf["remote"][name] = local
                else:
                    conf["remote"].pop(name, None)
        finally:
            r.close()
    except DvcException as e:
        raise StorageError(redact(f"DVC remote {name} in {repo}: {' '.join(str(e).split())}")) from None
    return {"name": name, "url": url, "endpoint": redact(endpoint) if endpoint else None, "region": region}
