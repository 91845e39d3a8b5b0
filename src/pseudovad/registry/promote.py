"""Registering a candidate: a new or reused model version, its tags and description, and the
promotion gate's MLflow side (`challenger`, and `champion` when `pseudovad.gate` says so)."""
from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from pseudovad import results, tracking
from pseudovad.config import Config
from pseudovad.errors import DataError
from pseudovad.files import exclusive_lock, settle, sha256_file
from pseudovad.gate import Entry, LabelFree, decide, decide_label_free
from pseudovad.method_spec import get_method, method_names
from pseudovad.models import model_file
from pseudovad.registry.versions import CHALLENGER, CHAMPION, LABEL_FREE_KEYS, METRIC_KEYS, TAG_KEYS, current_user, does_not_exist


@dataclass(frozen=True)
class Candidate:
    """A model file and its evaluation, checked to belong together."""

    model: Path
    metrics: dict[str, Any]
    meta: dict[str, Any]
    sha256: str
    metrics_file: Path | None = None

    @property
    def fingerprint(self) -> str:
        return self.metrics["fingerprint"]

    @property
    def evidence(self) -> str:
        """`labelled` (a test split with labels: the papers' AUC decides) or `label-free`."""
        return "labelled" if results.finite(self.metrics.get("auc_micro")) else "label-free"

    def label_free(self, prefix: str = "") -> LabelFree:
        m = self.metrics

        def num(key: str) -> float | None:
            v = m.get(prefix + key)
            return float(v) if results.finite(v) else None
        return LabelFree(num("holdout_flagged_share"), num("synthetic_auc"), num("holdout_false_alarms_per_hour"))

    @classmethod
    def read(cls, model: Path, metrics: Path) -> Candidate:
        ev = read_metrics(metrics)    # (both reads settle a half-done commit of their folder first)
        meta = model_file.read_model_file(model)["meta"]
        cand = cls(model, ev, meta, sha256_file(model), Path(metrics))
        cand.check()
        return cand

    def check(self) -> None:
        """The metrics are this model's: evaluate recorded the sha256 of the file it scored, and
        method and training set agree. A borrowed metrics file (another model's higher AUC) is refused."""
        ev, meta, metrics = self.metrics, self.meta, self.metrics_file or "metrics"
        if not ev.get("model_sha256"):
            raise DataError(f"{metrics}: no model_sha256, so it cannot be checked against {self.model} "
                            "(re-run `pseudovad evaluate` on it)")
        if ev["model_sha256"] != self.sha256:
            raise DataError(f"{metrics}: evaluated model sha256 {ev['model_sha256'][:12]}…, but {self.model} is "
                            f"{self.sha256[:12]}…: these metrics are another model's (evaluate this model first)")
        for key in ("method", "train_fingerprint"):
            if ev.get(key) and meta.get(key) and ev[key] != meta[key]:
                raise DataError(f"{metrics}: {key} {ev[key]!r} does not match {self.model} ({meta[key]!r}); "
                                "evaluate this model first")


def read_metrics(path: Path) -> dict[str, Any]:
    """An evaluation's results (metrics.json + provenance.json, `pseudovad.results`) with the things
    the gate needs: auc_micro (labelled) or the label-free check's numbers, the evaluation set's
    fingerprint, the evaluated model's sha256."""
    path = Path(path)
    settle(path.parent)
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found (run `pseudovad evaluate` first or pass --metrics)")
    m = results.read(path)
    auc = m.get("auc_micro")
    if not results.finite(auc) and not results.finite(m.get("holdout_flagged_share")):
        raise DataError(f"{path}: neither a labelled AUC (auc_micro {auc!r}) nor label-free numbers "
                        "(holdout_flagged_share): re-run `pseudovad evaluate`")
    if not isinstance(m.get("fingerprint"), str) or not m["fingerprint"]:
        raise DataError(f"{path}: fingerprint of the evaluation set missing")
    return m


def _float_tag(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _version_entry(mv) -> Entry:
    return Entry(str(mv.version), _float_tag(mv.tags.get("auc_micro")), mv.tags.get("eval_fingerprint"))


def _decide(cfg: Config, cand: Candidate, version: str, champ: Entry | None, champ_mv, force: bool, user: str):
    """The gate on the candidate's evidence: labelled (`gate.decide`, the training-free floor
    included) or label-free (`gate.decide_label_free`, against the champion's numbers evaluate
    measured beside it)."""
    ev = cand.metrics
    if cand.evidence == "labelled":       # with labels: the AUC against the champion's, and the floor
        floor = _float_tag(ev.get("auc_floor")) if cfg.registry.beat_floor else None
        return decide(Entry(version, float(ev["auc_micro"]), cand.fingerprint, floor), champ, cfg.registry.min_delta,
                      force, user)
    # without labels there is no floor (it is an AUC too): the label-free rule alone
    baseline_version = ev.get("baseline_version")
    if champ_mv is not None and ev.get("baseline_sha256") not in (None, champ_mv.tags.get("model_sha256")):
        baseline_version = None          # evaluate scored another file than the champion's
    baseline = cand.label_free("baseline_") if baseline_version else None
    return decide_label_free(version, cand.label_free(), champ.version if champ else None, baseline,
                             str(baseline_version) if baseline_version else None, cfg.registry.max_false_alarm_rise,
                             cfg.registry.max_synthetic_auc_drop, force, user)


def _ensure_registered_model(c, cfg: Config, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
        return
    except MlflowException as e:
        if not does_not_exist(e):
            raise
    try:
        c.create_registered_model(
            name, tags={"method": cfg.model.method},
            description=(f"pseudovad {cfg.model.method} detector. Alias `{CHAMPION}`: the version the promotion "
                         "gate (or a forced `pseudovad register --force`) chose; `challenger`: the latest "
                         "registered. Each version's tags hold its metrics and gate decision."))
    except MlflowException as e:  # registered concurrently
        if not tracking.has_error_code(e, "RESOURCE_ALREADY_EXISTS"):
            raise


def _same_versions(c, name: str, sha: str, fingerprint: str) -> list:
    """The versions of this exact model file evaluated on this exact test set, oldest first."""
    found = c.search_model_versions(f"name = '{name}' and tags.model_sha256 = '{sha}'")
    return sorted((mv for mv in found if mv.tags.get("eval_fingerprint") == fingerprint), key=lambda mv: int(mv.version))


def _find_version(c, name: str, sha: str, fingerprint: str):
    """An existing version of this exact model file evaluated on this exact test set."""
    same = _same_versions(c, name, sha, fingerprint)
    return same[-1] if same else None


def _create_version(c, name: str, source: str, tags: dict[str, str]):
    """A new version of `name` from the logged model `source` (models:/<model_id>), through the
    client: `mlflow.register_model` would first try to create the registered model, which
    `_ensure_registered_model` already did, and print "Registered model … already exists" on a
    fresh store. The logged model lists the version in its `mlflow.modelVersions` tag, as
    register_model (and a tracking server) records it."""
    import json

    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    model_id = source.removeprefix("models:/")
    mv = c.create_model_version(name, source, tags=tags, model_id=model_id)
    listed = json.loads(c.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
    # a tracking server has added it already (where register_model would add it a second time)
    if not any(e.get("name") == mv.name and str(e.get("version")) == str(mv.version) for e in listed):
        entry = {"name": mv.name, "version": mv.version}
        c.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*listed, entry])})
    return mv


def _keep_first(c, name: str, mine, sha: str, fingerprint: str):
    """(the version to use, whether it is another's) after creating `mine`: a register running at
    the same moment on a server (no shared lock) may have created a version of the same file on
    the same test set too. The oldest wins, on both sides; ours, if younger, is deleted before
    any alias or gate tag points at it."""
    same = _same_versions(c, name, sha, fingerprint)
    first = same[0] if same else mine
    if int(first.version) < int(mine.version):
        c.delete_model_version(name, str(mine.version))
        return first, True
    return mine, False


def _store_folder(uri: str) -> Path | None:
    """The folder of a tracking store on this machine's file system (sqlite file, file: or path),
    where a lock file can serialise registrations; None for a server or a database service."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        return Path(path).resolve().parent if path and path != ":memory:" else None
    if scheme == "file":
        return Path(parts.path).resolve()
    if scheme == "" and uri:
        return Path(uri).resolve()
    return None


@contextlib.contextmanager
def _one_registration(uri: str, name: str) -> Iterator[None]:
    """Registrations of `name` one at a time where the store is a local file (a lock beside it);
    on a server, `_keep_first` settles a race after the fact."""
    folder = _store_folder(uri)
    if folder is None:
        yield
        return
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    with exclusive_lock(folder / f".register-{safe}.lock", f"register of {name}", wait=True):
        yield


def find_logged_model(cfg: Config, sha256: str) -> str | None:
    """models:/<model_id> of a logged model in the experiment whose model.pt has this sha256."""
    c = tracking.client()
    exp = tracking.experiment_id(cfg)
    found = c.search_logged_models(experiment_ids=[exp], filter_string=f"tags.model_sha256 = '{sha256}'",
                                   max_results=1)
    return f"models:/{found[0].model_id}" if found else None


def _evaluation_run(c, exp: str, cand: Candidate):
    """The MLflow run that evaluated this model file on this test set: the one its provenance names,
    else the newest evaluate run tagged with both hashes; None when tracking was off."""
    from mlflow.exceptions import MlflowException

    run_id = cand.metrics.get("mlflow_run_id")
    if run_id:
        try:
            r = c.get_run(run_id)
            if r.data.tags.get("model_sha256") == cand.sha256:
                return r
        except MlflowException as e:   # written against another tracking server
            if not does_not_exist(e):
                raise
    found = c.search_runs([exp], f"tags.`pseudovad.stage` = 'evaluate' and tags.model_sha256 = '{cand.sha256}' "
                                 f"and tags.`data.fingerprint` = '{cand.fingerprint}'",
                          max_results=1, order_by=["attributes.start_time DESC"])
    return found[0] if found else None


ARTIFACT_LINKS = ("plots/roc.png", "plots/topk.png", "roc.csv")


def _fmt(v: Any) -> str:
    f = _float_tag(v)
    return "–" if f is None else f"{f:.4f}"


def run_link(experiment_id: str, run_id: str, path: str | None = None) -> str:
    """A link to a run (or one of its artifacts) in the MLflow UI, relative to the tracking server
    (a fragment: it resolves on whatever host and prefix the UI is served from)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}" + (f"/artifacts/{path}" if path else "")


def version_description(version: str, d, champ: Entry | None, champ_tags: dict[str, str], cand: Candidate,
                        cfg: Config, ev_run, artifacts: list[str]) -> str:
    """The version page that decides (Markdown): the gate's decision and Δ AUC against the champion
    it was compared with, the numbers side by side, the test set, the method and its pseudo-anomaly
    settings, and links to the evaluate run, its ROC and timelines, and the train run."""
    ev, meta = cand.metrics, cand.meta
    decision = "forced" if d.forced else ("promoted" if d.promote else "kept")
    lines = [f"**Gate: {decision}.** {d.reason}", ""]
    if cand.evidence == "label-free":
        lines += _label_free_lines(version, cand, cfg)
    elif champ is not None and champ.version != version:
        delta = (f"{ev['auc_micro'] - champ.auc:+.4f}" if champ.auc is not None and champ.fingerprint == cand.fingerprint
                 else "not comparable (other test set)")
        lines += [f"Δ auc_micro vs champion v{champ.version}: **{delta}** (min_delta {cfg.registry.min_delta:g})", "",
                  f"| metric | v{version} (this) | champion v{champ.version} |", "|---|---:|---:|"]
        lines += [f"| {k} | {_fmt(ev.get(k))} | {_fmt(champ_tags.get(k))} |" for k in METRIC_KEYS]
    else:
        why = "no champion before this version" if champ is None else "this version was the champion already"
        lines += [f"Δ auc_micro: none ({why})", "",
                  f"| metric | v{version} (this) |", "|---|---:|"]
        lines += [f"| {k} | {_fmt(ev.get(k))} |" for k in METRIC_KEYS]
    if cand.evidence == "labelled" and results.finite(ev.get("event_recall")):
        per_hour = ev.get("false_alarms_per_hour")
        lines += ["", f"At the operating threshold {ev.get('operating_threshold'):g} of the calibrated score: "
                      f"{ev.get('events_found')}/{ev.get('events')} anomalous events found, "
                      + (f"{per_hour:.1f} false alarms per hour of normal footage, " if results.finite(per_hour) else "")
                      + f"{100 * ev.get('flagged_share', 0):.2f}% of normal frames flagged."]
    conf = meta.get("config", {})
    method = str(meta.get("method") or ev.get("method"))
    pseudo = conf.get("pseudo", {})
    keys = get_method(method).pseudo_settings if method in method_names() else ()
    settings = ", ".join(f"pseudo.{k}={pseudo[k]}" for k in keys if k in pseudo)
    videos = ev.get("video_ids") or []
    held = ev.get("holdout_video_ids") or []
    lines += ["",
              (f"- **Test set**: {ev.get('dataset')}, {len(videos) or ev.get('videos')} videos"
               + (f" ({', '.join(map(str, videos[:12]))}{' …' if len(videos) > 12 else ''})" if videos else "")
               + f", {ev.get('frames')} frames, fingerprint `{cand.fingerprint[:16]}`") if cand.evidence == "labelled" else
              (f"- **Evidence**: label-free (no labelled test split): {ev.get('holdout_frames')} held-out normal frames "
               f"of {len(held)} training videos ({', '.join(map(str, held[:12]))}{' …' if len(held) > 12 else ''}), "
               f"injected kinds {', '.join(ev.get('inject_kinds') or [])}, fingerprint `{cand.fingerprint[:16]}`"),
              f"- **Method**: {method} · {ev.get('variant', '')} ({settings}); trained on `"
              f"{str(meta.get('train_fingerprint'))[:16]}`, {meta.get('steps', '?')} steps",
              f"- **Model file**: sha256 `{cand.sha256[:16]}`"]
    if _float_tag(ev.get("auc_floor")) is not None:
        rule = ("the gate refuses a version that does not beat it" if cfg.registry.beat_floor
                else "not gating: registry.beat_floor is false")
        lines.append(f"- **Training-free floor** ({rule}): auc_floor "
                     f"{_fmt(ev.get('auc_floor'))} (frame difference {_fmt(ev.get('auc_floor_framediff'))}, temporal "
                     f"residual {_fmt(ev.get('auc_floor_residual'))}); this version's margin "
                     f"{ev['auc_micro'] - float(ev['auc_floor']):+.4f}")
    if ev_run is not None:
        exp, rid = ev_run.info.experiment_id, ev_run.info.run_id
        links = [f"[{a.split('/')[-1]}]({run_link(exp, rid, a)})" for a in artifacts
                 if a in ARTIFACT_LINKS or a.startswith("plots/timeline_")]
        lines.append(f"- **Evaluate run**: [{ev_run.info.run_name}]({run_link(exp, rid)})"
                     + (f" · {' · '.join(links)}" if links else ""))
        parent = ev_run.data.tags.get("mlflow.parentRunId")
        if parent:
            lines.append(f"- **Pipeline run**: [{parent[:8]}]({run_link(exp, parent)}) (train, evaluate, register)")
    else:
        lines.append("- **Evaluate run**: none in MLflow (evaluated with tracking off)")
    return "\n".join(lines) + "\n"


def _label_free_lines(version: str, cand: Candidate, cfg: Config) -> list[str]:
    """The label-free table: this version against the champion evaluate scored beside it."""
    ev = cand.metrics
    base = ev.get("baseline_version")
    rows = [("share of held-out normal frames flagged", "holdout_flagged_share", True),
            ("false alarms per hour (held-out)", "holdout_false_alarms_per_hour", False),
            ("injected-anomaly AUC (mean of kinds)", "synthetic_auc", False),
            *[(f"injected `{k}` AUC", f"synthetic_auc_{k}", False) for k in ev.get("inject_kinds") or []]]

    def cell(key: str, pct: bool) -> str:
        v = ev.get(key)
        return "–" if not results.finite(v) else (f"{100 * v:.2f}%" if pct else f"{v:.4f}")
    head = [f"Evidence: **label-free**, on held-out normal footage of the training cameras (tolerances: "
            f"false alarms +{100 * cfg.registry.max_false_alarm_rise:g} points, injected-anomaly AUC "
            + ("not checked" if cfg.registry.max_synthetic_auc_drop is None else f"−{cfg.registry.max_synthetic_auc_drop:g}")
            + ")", ""]
    if base:
        head += [f"| label-free | v{version} (this) | champion v{base} (same footage) |", "|---|---:|---:|"]
        head += [f"| {name} | {cell(k, pct)} | {cell('baseline_' + k, pct)} |" for name, k, pct in rows]
    else:
        head += [f"| label-free | v{version} (this) |", "|---|---:|"]
        head += [f"| {name} | {cell(k, pct)} |" for name, k, pct in rows]
    same = ev.get("inject_resembles")
    if same:
        head += ["", f"The `{same}` kind resembles this model's own pseudo anomalies: read its score as partly seen in training."]
    return head


def _log_on_model(c, model_id: str, cand: Candidate, test_set) -> None:
    """The evaluation's numbers on the logged model (the version's metrics), unless evaluate put them there."""
    have = c.get_logged_model(model_id).metrics or []
    if any(m.key == "auc_micro" and m.dataset_digest == cand.fingerprint[:16] for m in have):
        return
    tracking.log_model_metrics(model_id, {k: v for k, v in cand.metrics.items() if results.finite(v)}, test_set)


def register(cfg: Config, cand: Candidate, force: bool = False) -> dict[str, Any]:
    """Register `cand` inside the active MLflow run (a new version, or the version of the same file
    on the same test set), alias it `challenger`, run the gate against the champion, move
    `champion` if it says so, tag the version with the decision and describe it (the decision,
    Δ, test set, method, links to the evaluate run). Returns the decision record."""
    cand.check()
    name = cfg.registered_model_name
    user = current_user()
    ev, meta, sha, fp = cand.metrics, cand.meta, cand.sha256, cand.fingerprint
    run_id = tracking.active_run_id()
    uri = tracking.tracking_uri(cfg)
    with tracking.errors(f"registry {name} at {tracking.redact(uri)}", uri), _one_registration(uri, name):
        c = tracking.client()
        exp = tracking.experiment_id(cfg)
        tracking.log_metrics({k: ev.get(k) for k in TAG_KEYS})
        ev_run = _evaluation_run(c, exp, cand)
        # the test set as the evaluate run logged it (with its DVC hash), else from the provenance
        logged_sets = [i.dataset for i in (ev_run.inputs.dataset_inputs if ev_run is not None else [])
                       if i.dataset.digest == fp[:16]]
        test_set = logged_sets[0] if logged_sets else tracking.dataset(
            f"{ev.get('dataset', cfg.data.name)}-testing", ev.get("store") or ".", fp,
            videos=ev.get("video_ids"), frames=ev.get("frames"))
        tracking.log_dataset(test_set, "testing")
        if ev_run is not None:
            tracking.set_tags({"evaluate_run_id": ev_run.info.run_id})
        _ensure_registered_model(c, cfg, name)
        mv = _find_version(c, name, sha, fp)
        reused = mv is not None
        if mv is None:
            source = find_logged_model(cfg, sha) or tracking.log_model(cand.model, meta)["model_uri"]
            _log_on_model(c, source.removeprefix("models:/"), cand, test_set)
            tags = {k: repr(float(ev[k])) for k in TAG_KEYS if _float_tag(ev.get(k)) is not None}
            tags.update({"evidence": cand.evidence, "eval_fingerprint": fp, "model_sha256": sha, "method": str(meta.get("method")),
                         "train_fingerprint": str(meta.get("train_fingerprint")), "dataset": cfg.data.name,
                         "registered_by": user, "register_run_id": run_id})
            if meta.get("data_version"):     # the DVC hash of the store it was trained on
                tags["data_version"] = str(meta["data_version"])
            if ev_run is not None:
                tags["evaluate_run_id"] = ev_run.info.run_id
            mv, reused = _keep_first(c, name, _create_version(c, name, source, tags), sha, fp)
        version = str(mv.version)
        aliases = dict(c.get_registered_model(name).aliases or {})
        before = aliases.get(CHAMPION)
        champ_mv = c.get_model_version(name, before) if before is not None else None
        champ = _version_entry(champ_mv) if champ_mv is not None else None
        d = _decide(cfg, cand, version, champ, champ_mv, force, user)
        c.set_registered_model_alias(name, CHALLENGER, version)
        if d.promote:
            c.set_registered_model_alias(name, CHAMPION, version)
        after = version if d.promote else (str(before) if before is not None else None)
        gate = {"gate.decision": "forced" if d.forced else ("promoted" if d.promote else "kept"),
                "gate.reason": d.reason, "gate.evidence": cand.evidence,
                "gate.champion_before": str(before) if before is not None else "none",
                "gate.min_delta": repr(cfg.registry.min_delta),
                "gate.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if d.forced:
            gate["gate.forced_by"] = user
        if d.promote or not reused:  # a re-run that changes nothing keeps the version's first decision
            for k, v in gate.items():
                c.set_model_version_tag(name, version, k, v)
            artifacts = _artifact_paths(c, ev_run.info.run_id) if ev_run is not None else []
            c.update_model_version(name, version, description=version_description(
                version, d, champ, dict(champ_mv.tags) if champ_mv is not None else {}, cand, cfg, ev_run, artifacts))
        tracking.set_tags({**gate, "registered_version": version})
    return {
        "model_name": name, "version": version, "model_uri": f"models:/{name}/{version}",
        "promoted": d.promote, "forced": d.forced, "forced_by": user if d.forced else None, "reason": d.reason,
        "champion_before": str(before) if before is not None else None, "champion_after": after,
        "evidence": cand.evidence, "auc_micro": _float_tag(ev.get("auc_micro")),
        "champion_auc_micro": champ.auc if champ else None,
        **{k: _float_tag(ev.get(k)) for k in LABEL_FREE_KEYS},
        "min_delta": cfg.registry.min_delta, "fingerprint": fp, "model_sha256": sha, "reused_version": reused,
        "run_id": run_id, "evaluate_run_id": ev_run.info.run_id if ev_run is not None else None,
        "tracking_uri": tracking.redact(uri),
    }


def _artifact_paths(c, run_id: str) -> list[str]:
    """The evaluate run's top-level files and plots/ (what the description links to)."""
    top = c.list_artifacts(run_id)
    return [a.path for a in top if not a.is_dir] + [a.path for a in c.list_artifacts(run_id, "plots")]


