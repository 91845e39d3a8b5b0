"""A stage's outputs through a DVC remote, for Kubeflow steps: frames a laptop's `dvc repro &&
dvc push` extracted are pulled instead of decoded again, and what the cluster extracts is pushed
(the data, and DVC's run cache) so that the next laptop or cluster run pulls it.

A step works in a `Checkout`: a git clone of the project at the pipeline's revision (branch, tag
— e.g. a data version tag — or commit), with the pipeline's DVC remote configured in its
`.dvc/config.local` (`verify = true`: DVC re-hashes every object it downloads). Then
`Checkout.materialize(stage, cfg)` does what `dvc repro --pull --single-item <stage>` would, in
three explicit steps so that the step can say which one happened:

1. **pulled** — dvc.lock at that revision is current for the step's params (DVC's own check; the
   footage need not be present): `dvc pull` the outputs it names. Nothing is decoded.
2. **restored** — otherwise (other params, or new footage the lock does not name), the stage's
   inputs are pulled and the remote's run cache (what `dvc push --run-cache` uploads) is asked
   for an earlier run of the same command on the same code, footage and params, by anyone: its
   outputs are pulled. Nothing is decoded.
3. **extracted** — otherwise the stage is reproduced with the revision's command and code (the
   checkout's `src/` first on PYTHONPATH), which records dvc.lock and the run cache exactly as
   on a laptop, and pushed with its run cache.

Everything pulled is checked by hash: DVC refuses an object whose md5 is not its name, and the
folder's `dvc_hash` must equal the recorded one. A corrupt or partial object is named in one line
(the file and its object in the remote), deleted from the remote so that nobody pulls it again,
and the stage goes on to 2 and 3: a corrupt object is never used.

Git: the `git` binary (the image has it). Private repositories over https take a token from the
environment (`GIT_TOKEN`, and `GIT_USERNAME`, default `x-access-token`; a Kubernetes secret),
handed to git by a credential helper that reads the variables, so the token is in no URL, argv,
log or file. Credentials in a repository URL are refused.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from pseudovad import config as config_mod
from pseudovad.config import Config
from pseudovad.data.versioning import DirVersion, dir_version
from pseudovad.errors import ConfigError, DataError, StorageError
from pseudovad.storage import configure_dvc_remote, redact

REMOTE = "pipeline"          # the remote's name in a checkout's .dvc/config
GIT_SECRET_KEYS = ("GIT_USERNAME", "GIT_TOKEN")
_CREDENTIAL_HELPER = ('!f() { test "$1" = get || exit 0; '
                      'printf "username=%s\\npassword=%s\\n" "${GIT_USERNAME:-x-access-token}" "$GIT_TOKEN"; }; f')


def _git(args: list[str], cwd: Optional[Path] = None) -> str:
    cmd = ["git", "-c", "advice.detachedHead=false"]
    if os.environ.get("GIT_TOKEN"):
        cmd += ["-c", "credential.helper=", "-c", f"credential.helper={_CREDENTIAL_HELPER}"]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        r = subprocess.run(cmd + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise ConfigError("git: command not found (the step's image needs git)") from None
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise StorageError(redact(f"git {args[0]}: {lines[-1] if lines else f'exit {r.returncode}'}"))
    return r.stdout.strip()


def check_repo_url(url: str) -> str:
    """A repository URL a step may clone: set, and with no credentials in it."""
    from urllib.parse import urlsplit

    if not url:
        raise ConfigError("repo_url: required with a DVC remote (the project's git repository: https://…, a path "
                          "or file://…)")
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        raise ConfigError("repo_url: must not contain credentials (user:token@); put the token in the git secret "
                          "(GIT_TOKEN)")
    return url


@dataclass
class Outcome:
    """What `materialize` did for one output folder."""

    stage: str
    path: Path                     # the output folder inside the checkout
    version: DirVersion            # its DVC version (dvc.lock's md5, size, nfiles)
    how: str                       # "pulled" | "restored" | "extracted"
    log: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)     # inputs pulled for steps 2 and 3

    @property
    def decoded(self) -> bool:
        return self.how == "extracted"

    def metadata(self) -> dict[str, Any]:
        """For a KFP artifact: how the folder came (`dvc_how`), whether footage was decoded, and
        which inputs had to be pulled for that."""
        return {"dvc_how": self.how, "decoded": self.decoded, "inputs_pulled": list(self.fetched)}


class Checkout:
    """A git clone of the project at one revision, with the pipeline's DVC remote."""

    def __init__(self, root: Path, url: str, commit: str):
        self.root, self.url, self.commit = Path(root), url, commit

    @classmethod
    def clone(cls, url: str, revision: str, dest: str | Path) -> "Checkout":
        """Fetch `revision` (branch, tag or commit; "" = the remote's HEAD) of `url` into `dest`
        (emptied first). A shallow fetch where the server allows it, else the full history."""
        check_repo_url(url)
        dest = Path(dest)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        local = Path(url).expanduser()
        source = local.resolve().as_uri() if "://" not in url and local.exists() else url
        _git(["init", "-q"], dest)
        _git(["remote", "add", "origin", source], dest)
        try:
            _git(["fetch", "-q", "--depth", "1", "origin", revision or "HEAD"], dest)
            _git(["checkout", "-q", "--detach", "FETCH_HEAD"], dest)
        except StorageError:
            if not revision:
                raise
            # a server that refuses a commit id in a shallow fetch: the whole history, then the commit
            _git(["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"], dest)
            _git(["checkout", "-q", "--detach", revision], dest)
        commit = _git(["rev-parse", "HEAD"], dest)
        if not (dest / ".dvc").is_dir():
            raise DataError(f"{redact(url)}@{revision or 'HEAD'}: not a DVC project (no .dvc/ folder)")
        return cls(dest, url, commit)

    @property
    def params_text(self) -> str:
        path = self.root / "params.yaml"
        return path.read_text() if path.is_file() else ""

    # ------------------------------------------------------------------------------------------
    def use_remote(self, cfg: Config) -> dict:
        """Point the checkout at `storage.dvc_remote` (endpoint from the environment / params,
        credentials from the environment only), with DVC's download verification on."""
        info = configure_dvc_remote(cfg, repo=self.root, name=REMOTE)
        with self._repo() as repo:
            with repo.config.edit("local") as conf:
                conf["remote"].setdefault(REMOTE, {})["verify"] = True
        return info

    def stage_params(self, stage: str) -> list[str]:
        """The params.yaml keys a stage of the checkout's dvc.yaml depends on."""
        spec = yaml.safe_load((self.root / "dvc.yaml").read_text()) or {}
        st = (spec.get("stages") or {}).get(stage)
        if not isinstance(st, dict):
            raise DataError(f"{self.root / 'dvc.yaml'}: no stage {stage!r} at {self.commit[:12]}")
        keys: list[str] = []
        for p in st.get("params") or []:
            if isinstance(p, str):
                keys.append(p)
            elif isinstance(p, dict):
                keys += [k for f, ks in p.items() if f == "params.yaml" for k in ks]
        return keys

    def apply_params(self, stage: str, cfg: Config) -> list[str]:
        """Write the step's values of the stage's params into the checkout's params.yaml, so that
        DVC judges dvc.lock and the run cache by what this step runs with. Returns the keys that
        differ from the revision's params.yaml (none: the file is left as it is)."""
        path = self.root / "params.yaml"
        raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
        raw = raw or {}
        theirs = yaml.safe_load(config_mod.dump(config_mod.from_dict(raw)))
        ours = yaml.safe_load(config_mod.dump(cfg))
        changed = {k: _lookup(ours, k) for k in self.stage_params(stage) if _lookup(ours, k) != _lookup(theirs, k)}
        if changed:
            path.write_text(yaml.safe_dump(config_mod.set_keys(raw, changed), sort_keys=False))
        return sorted(changed)

    # ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _repo(self, locked: bool = False) -> Iterator[Any]:
        from dvc.repo import Repo, lock_repo

        repo = Repo(str(self.root))
        try:
            # DVC resolves targets against the working directory, as its CLI run from the root does
            with contextlib.chdir(self.root), lock_repo(repo) if locked else contextlib.nullcontext():
                yield repo
        finally:
            repo.close()

    def materialize(self, stage_name: str, cfg: Config, out: Optional[str] = None) -> Outcome:
        """Make the output folder `out` (default: the stage's only output) of `stage_name` present
        and verified in the checkout: pulled, restored from the run cache, or extracted and
        pushed (module doc)."""
        changed_params = self.apply_params(stage_name, cfg)
        log: list[str] = []
        self._corrupt: set[str] = set()
        with self._repo(locked=True) as repo:
            (stage,) = repo.stage.collect(stage_name)
            rel = _output(stage, out).def_path
            folder = self.root / rel
            at = self.commit[:12]

            # 1. dvc.lock at the revision names the output for these params
            expected = _output(stage, rel).hash_info.value
            # (an input missing here counts as unchanged unless the stage making it now records
            # another version: `upstream`, as `dvc repro` judges it)
            if expected and not stage.changed(allow_missing=True, upstream=list(repo.index.stages)):
                version = self._pull_verified(repo, stage, rel, expected, log)
                if version:
                    log.append(f"{stage_name}: dvc.lock at {at} names {rel} {expected} for these params; "
                               "pulled it from the DVC remote (nothing decoded)")
                    return Outcome(stage_name, folder, version, "pulled", log)
            elif changed_params:
                log.append(f"{stage_name}: {', '.join(changed_params)} differ from params.yaml at {at}, so dvc.lock "
                           "does not name the output")
            else:
                log.append(f"{stage_name}: dvc.lock at {at} does not name {rel} for the stage's inputs")

            # 2. someone ran the stage on the same code, inputs and params: the run cache has it
            fetched = self._pull_inputs(repo, stage)
            entry = self._run_cache_entry(repo, stage)
            expected = next((o.get("md5") for o in (entry or {}).get("outs", []) if o.get("path") == rel), None)
            if expected:
                from dvc.stage.loader import StageLoader

                StageLoader.fill_from_lock(stage, entry)   # dvc.lock as `dvc repro` leaves it after a restore
                stage.dump(update_pipeline=False)
                repo._reset()
                version = self._pull_verified(repo, stage, rel, expected, log)
                if version:
                    log.append(f"{stage_name}: the DVC remote's run cache has {rel} {expected} for these inputs "
                               "and params; pulled it (nothing decoded)")
                    self._repair(repo, log)
                    return Outcome(stage_name, folder, version, "restored", log, fetched)

            # 3. extract with the revision's command and code, record, push
            version = self._reproduce(repo, stage_name, folder)
            self._repair(repo, log)
            repo.push(targets=[stage_name], remote=REMOTE, run_cache=True)
            log.append(f"{stage_name}: ran `{stage.cmd}` → {rel} {version.md5}; pushed it and its run cache to "
                       "the DVC remote")
            return Outcome(stage_name, folder, version, "extracted", log, fetched)

    def _pull_verified(self, repo, stage, rel: str, expected: str, log: list[str]) -> Optional[DirVersion]:
        """`dvc pull` the stage's outputs; the folder's version if it is `expected`, else None with
        the reason in `log` (objects missing from the remote, or corrupt: named and deleted)."""
        from dvc.exceptions import DvcException

        folder = self.root / rel
        try:
            repo.pull(targets=[stage.addressing], remote=REMOTE)
            version = dir_version(folder)
            if version.md5 == expected:
                return version
        except DvcException:
            pass
        log.append(self._diagnose(repo, expected, rel))
        shutil.rmtree(folder, ignore_errors=True)
        return None

    def _run_cache_entry(self, repo, stage) -> Optional[dict]:
        """The newest run-cache entry (a dvc.lock stage entry) for the stage's current inputs and
        params, the remote's entries pulled first; None if nobody ran it so."""
        from dvc.exceptions import DvcException
        from dvc.stage.cache import _can_hash

        try:
            repo.stage_cache.pull(REMOTE)
        except DvcException:
            return None
        if not _can_hash(stage):
            return None
        stage.save_deps()
        return repo.stage_cache._load(stage)

    def _pull_inputs(self, repo, stage) -> list[str]:
        """Pull the stage's data inputs that are not in the checkout (footage, ingested footage)."""
        from dvc.dependency.param import ParamsDependency
        from dvc.exceptions import DvcException

        got = []
        for dep in stage.deps:
            if isinstance(dep, ParamsDependency) or dep.exists:
                continue
            try:
                repo.pull(targets=[dep.def_path], remote=REMOTE)
            except DvcException as e:
                raise DataError(redact(f"{stage.addressing}: its input {dep.def_path} is neither in the checkout "
                                       f"nor pullable from the DVC remote ({' '.join(str(e).split())[:200]})")) from None
            got.append(dep.def_path)
        return got

    def _reproduce(self, repo, stage_name: str, folder: Path) -> DirVersion:
        """`dvc repro --force --single-item`: the stage's own command, the checkout's code first on
        PYTHONPATH; DVC records dvc.lock, the cache and the run cache."""
        src = self.root / "src"
        # the command's tools (pseudovad, dvc) from this interpreter's environment, first on PATH
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = {**os.environ, "PATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
        if (src / "pseudovad").is_dir():
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
        repo.reproduce(stage_name, single_item=True, force=True, run_env=env)
        return dir_version(folder)

    # ------------------------------------------------------------------------------------------
    def _remote_md5(self, odb, oid: str) -> Optional[str]:
        """The md5 of an object's bytes in the remote (None: not there), streamed."""
        path = odb.oid_to_path(oid)
        if not odb.fs.exists(path):
            return None
        h = hashlib.md5(usedforsecurity=False)
        with odb.fs.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    def _diagnose(self, repo, expected: str, rel: str) -> str:
        """Why the pulled `rel` is not `expected`, in one line: an object the remote lacks, or one
        whose bytes do not hash to its name (corrupt or partial: deleted from the remote and the
        local cache, so nobody uses it; `_repair` uploads the good copy once there is one)."""
        remote = repo.cloud.get_remote_odb(REMOTE)
        got = self._remote_md5(remote, expected)
        if got is None:
            return f"{rel}: the DVC remote has no {expected} (never pushed there)"
        if got != expected.removesuffix(".dir"):
            self._drop(repo, [expected])
            return (f"{rel}: listing {self._object_url(repo, expected)} in the DVC remote is corrupt or partial "
                    f"(md5 {got}); deleted it there, not used")
        listing = {e["relpath"]: e["md5"] for e in json.loads(remote.fs.cat_file(remote.oid_to_path(expected)))}
        missing, corrupt = [], []
        for name, md5 in sorted(listing.items()):
            local = Path(repo.cache.local.oid_to_path(md5))
            if local.is_file() and _md5_file(local) == md5:
                continue
            have = self._remote_md5(remote, md5)
            if have is None:
                missing.append((name, md5))
            elif have != md5:
                corrupt.append((name, md5, have))
        if corrupt:
            self._drop(repo, [md5 for _, md5, _ in corrupt])
            name, md5, have = corrupt[0]
            more = f"; {len(corrupt) - 1} more like it" if len(corrupt) > 1 else ""
            return (f"{rel}/{name}: object {self._object_url(repo, md5)} in the DVC remote is corrupt or partial "
                    f"(md5 {have}{more}); deleted it there, not used")
        if missing:
            name, md5 = missing[0]
            return f"{rel}/{name}: the DVC remote lacks object {md5} ({len(missing)} of {len(listing)} files missing)"
        return f"{rel}: dvc pull did not deliver {expected} (the remote's objects hash right; a transfer error?)"

    def _drop(self, repo, oids: list[str]) -> None:
        remote = repo.cloud.get_remote_odb(REMOTE)
        for oid in oids:
            self._corrupt.add(oid)
            for odb in (repo.cache.local, remote):
                with contextlib.suppress(FileNotFoundError):
                    odb.fs.rm(odb.oid_to_path(oid))

    def _repair(self, repo, log: list[str]) -> None:
        """Upload the good copy of each corrupt object deleted from the remote, now that the local
        cache has it (DVC's push may skip it: its index of the remote predates the deletion)."""
        remote = repo.cloud.get_remote_odb(REMOTE)
        for oid in sorted(self._corrupt):
            local = Path(repo.cache.local.oid_to_path(oid))
            if local.is_file() and _md5_file(local) == oid.removesuffix(".dir"):
                remote.fs.put_file(str(local), remote.oid_to_path(oid))
                log.append(f"replaced the corrupt object {self._object_url(repo, oid)} with the good copy")
        self._corrupt.clear()

    def _object_url(self, repo, oid: str) -> str:
        remote = repo.cloud.get_remote_odb(REMOTE)
        return redact(remote.fs.unstrip_protocol(remote.oid_to_path(oid)))

    def move_out(self, outcome: Outcome, dest: str | Path, drop: bool = True) -> None:
        """Move the output folder to `dest` (a KFP output artifact's path, a volume); then drop the
        checkout unless `drop` is false."""
        _move(outcome.path, Path(dest))
        if drop:
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------------------------------
    # Folders that live outside the checkout (the retraining pipeline's store on a volume)

    def output_of(self, stage_name: str) -> str:
        with self._repo() as repo:
            (stage,) = repo.stage.collect(stage_name)
            return _output(stage, None).def_path

    def seed(self, cfg: Config, folders: dict[str, Path], stage_name: str = "extract") -> list[str]:
        """Fill missing folders on a volume from the revision's data: `folders` maps stages
        (`extract`, `ingest`) to where their output lives. The store comes as `materialize` makes
        it; the other outputs are pulled as dvc.lock names them (nothing there: left absent)."""
        from dvc.exceptions import DvcException

        log: list[str] = []
        if folders.get(stage_name) is None or (Path(folders[stage_name]) / "manifest.json").is_file():
            return log
        got = self.materialize(stage_name, cfg)
        log += got.log
        _move(got.path, Path(folders[stage_name]))
        for name, dest in folders.items():
            if name == stage_name or Path(dest).exists():
                continue
            rel = self.output_of(name)
            if not (self.root / rel).exists():
                with self._repo(locked=True) as repo, contextlib.suppress(DvcException):
                    repo.pull(targets=[name], remote=REMOTE)
            if (self.root / rel).exists():
                _move(self.root / rel, Path(dest))
                log.append(f"{name}: {rel} from dvc.lock at {self.commit[:12]} → {dest}")
        return log

    def record(self, folders: dict[str, Path]) -> dict[str, DirVersion]:
        """`dvc commit -f <stages> && dvc push` for outputs that live outside the checkout (linked
        into it): dvc.lock records their versions, the remote gets their bytes. Inputs not in the
        checkout (the footage the store was first extracted from) keep their recorded versions.
        Returns each stage's output version; `lock_text` is the resulting dvc.lock."""
        versions: dict[str, DirVersion] = {}
        for name, folder in folders.items():
            link = self.root / self.output_of(name)
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                shutil.rmtree(link)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(folder).resolve(), target_is_directory=True)
        with self._repo(locked=True) as repo:
            for name, folder in folders.items():
                (stage,) = repo.stage.collect(name)
                stage.save(allow_missing=True, run_cache=False)
                stage.commit(allow_missing=True, relink=False)
                stage.dump(update_pipeline=False)
                versions[name] = dir_version(folder)
            repo._reset()
            repo.push(targets=list(folders), remote=REMOTE)
        return versions

    @property
    def lock_text(self) -> str:
        path = self.root / "dvc.lock"
        return path.read_text() if path.is_file() else ""


def _move(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dest))


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _output(stage, out: Optional[str]):
    outs = [o for o in stage.outs if out is None or o.def_path == out]
    if len(outs) != 1:
        raise DataError(f"dvc.yaml: stage {stage.addressing} has {'no output ' + out if out else 'several outputs'}")
    return outs[0]


def _md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
