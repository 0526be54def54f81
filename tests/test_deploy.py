"""deploy/ stays consistent with the code: settings, routes, ports, secrets and store choices.

The manifests are read with pyyaml and combined the way kustomize combines them (ConfigMap data
and Deployment env merged by key, ``replicas``, volumes); when ``kubectl`` is installed, the real
``kubectl kustomize`` output is checked against the same expectations.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ctxgate.server import create_app
from ctxgate.server.auth import check_config
from ctxgate.settings import ENV_PREFIX, Settings, load_settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
BASE = K8S / "base"
SCALE_OUT = K8S / "overlays" / "scale-out"
OPENSHIFT = K8S / "components" / "openshift"
CONTAINERFILE = DEPLOY / "Containerfile"
SECRET_EXAMPLE = BASE / "secret.example.yaml"
VARIANTS = {"base": BASE, "scale-out": SCALE_OUT}


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization(path: Path) -> dict[str, Any]:
    (doc,) = docs_of(path / "kustomization.yaml")
    return doc


def setting_env_names() -> set[str]:
    """Every environment variable ctxgate reads: CTXGATE_<FIELD>, CTXGATE_CONFIG and the aliases."""
    names = {ENV_PREFIX + "CONFIG"}
    for name, info in Settings.model_fields.items():
        names.add(ENV_PREFIX + name.upper())
        alias = info.validation_alias
        for choice in getattr(alias, "choices", ()):
            names.add(str(choice))
    return names


def secret_env_names() -> set[str]:
    return {ENV_PREFIX + name.upper() for name, info in Settings.model_fields.items()
            if SecretStr in getattr(info.annotation, "__args__", (info.annotation,))}


def by_name(items: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Strategic merge of a named list (env, volumes, containers): same name replaced key by key."""
    out = {item["name"]: dict(item) for item in items}
    for item in new:
        merged = {**out.get(item["name"], {}), **item}
        out[item["name"]] = {k: v for k, v in merged.items() if v is not None}
    return list(out.values())


@dataclass
class Variant:
    """What one kustomization deploys, combined from its files and its bases."""

    config: dict[str, str] = field(default_factory=dict)
    deployment: dict[str, Any] = field(default_factory=dict)
    kinds: list[tuple[str, str]] = field(default_factory=list)

    def add(self, doc: dict[str, Any]) -> None:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if doc.get("$patch") == "delete":
            self.kinds.remove((kind, name))
        elif kind == "ConfigMap":
            self.config.update(doc.get("data", {}))
        elif kind == "Deployment" and self.deployment:
            self.merge_deployment(doc)
        elif kind == "Deployment":
            self.deployment = doc
        if (kind, name) not in self.kinds and doc.get("$patch") != "delete":
            self.kinds.append((kind, name))

    def merge_deployment(self, patch: dict[str, Any]) -> None:
        spec, new = self.deployment["spec"], patch["spec"]
        spec.update({k: v for k, v in new.items() if k != "template"})
        pod, new_pod = spec["template"]["spec"], new.get("template", {}).get("spec", {})
        for key, value in new_pod.items():
            if key == "volumes":
                pod["volumes"] = by_name(pod["volumes"], value)
            elif key == "containers":
                for c in value:
                    (old,) = [o for o in pod["containers"] if o["name"] == c["name"]]
                    old["env"] = by_name(old.get("env", []), c.get("env", []))
                    old.update({k: v for k, v in c.items() if k != "env"})
            else:
                pod[key] = value

    @property
    def replicas(self) -> int:
        return int(self.deployment["spec"].get("replicas", 1))

    @property
    def pod(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        (c,) = self.pod["containers"]
        return c


def load_variant(path: Path, into: Variant | None = None) -> Variant:
    v = into or Variant()
    k = kustomization(path)
    for res in k.get("resources", []):
        target = path / res
        if target.is_dir():
            load_variant(target, v)
        else:
            for doc in docs_of(target):
                v.add(doc)
    for p in k.get("patches", []):
        for doc in docs_of(path / p["path"]) if "path" in p else yaml.safe_load_all(p["patch"]):
            if isinstance(doc, dict):
                v.add(doc)
    for r in k.get("replicas", []):
        assert r["name"] == v.deployment["metadata"]["name"]
        v.deployment["spec"]["replicas"] = r["count"]
    return v


def containerfile() -> dict[str, list[str]]:
    """Instructions of the Containerfile (continuation lines joined), by keyword, in order."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr in containerfile().get("ENV", []):
        env.update(kv.split("=", 1) for kv in instr.split())
    return env


def secret_example() -> dict[str, str]:
    (doc,) = docs_of(SECRET_EXAMPLE)
    assert doc["kind"] == "Secret"
    return {f"{doc['metadata']['name']}/{k}": v for k, v in doc["stringData"].items()}


def container_env(v: Variant) -> dict[str, str]:
    """The environment the container starts with (image ENV, ConfigMap, env, Secret values)."""
    env = dict(image_env())
    for ref in v.container.get("envFrom", []):
        assert ref["configMapRef"]["name"] == "ctxgate-config"
        env.update(v.config)
    secrets = secret_example()
    for e in v.container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[f"{ref['name']}/{ref['key']}"]
    return env


# --- files ----------------------------------------------------------------------------------


def test_every_yaml_file_parses_into_kubernetes_objects() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 12
    for path in files:
        docs = docs_of(path)
        assert docs, path
        for doc in docs:
            assert isinstance(doc, dict) and {"apiVersion", "kind"} <= doc.keys(), path


def test_kustomizations_reference_existing_files_and_leave_none_out() -> None:
    kfiles = sorted(K8S.rglob("kustomization.yaml"))
    assert {p.parent for p in kfiles} == {BASE, SCALE_OUT, OPENSHIFT}
    used: set[Path] = set()
    for kfile in kfiles:
        k = kustomization(kfile.parent)
        refs = k.get("resources", []) + k.get("components", []) + [p["path"] for p in k.get("patches", [])
                                                                   if "path" in p]
        for ref in refs:
            target = (kfile.parent / ref).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{kfile}: {ref}"
            used.add(target)
    orphans = [p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and p.resolve() not in used]
    assert orphans == [SECRET_EXAMPLE]  # the one file kept out on purpose: no credentials in git


# --- settings -------------------------------------------------------------------------------


def test_every_env_name_in_deploy_is_a_real_setting() -> None:
    known = setting_env_names()
    assert {"CTXGATE_DECISION_STORE", "ANTHROPIC_TARGET_API_URL", "OPENAI_TARGET_API_URL"} <= known
    names: set[str] = {n for n in image_env() if n.startswith(ENV_PREFIX)}
    for path in K8S.rglob("*.yaml"):
        for doc in docs_of(path):
            if doc["kind"] == "ConfigMap":
                names |= set(doc.get("data", {}))  # all of it becomes the container's env
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                names |= {e["name"] for e in container.get("env", [])}
    assert names - known == set()
    # the upstream names that headroom-gateway deployments already use are shown
    assert {"ANTHROPIC_TARGET_API_URL", "OPENAI_TARGET_API_URL"} <= names


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_starts_with_its_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    v = load_variant(VARIANTS[name])
    for var in list(os.environ):
        if var in setting_env_names():
            monkeypatch.delenv(var)
    for var, value in container_env(v).items():
        monkeypatch.setenv(var, value)
    cmd = json.loads(containerfile()["ENTRYPOINT"][-1]) + json.loads(containerfile()["CMD"][-1])
    assert cmd[:2] == ["ctxgate", "serve"] and "command" not in v.container and "args" not in v.container
    host = cmd[cmd.index("--host") + 1]
    settings = load_settings(host=host)  # every value valid, as at start-up
    check_config(settings)  # not loopback, so this passes only with a token
    assert not settings.is_loopback()
    assert settings.auth_token is not None and not settings.allow_unauthenticated
    assert settings.port == v.container["ports"][0]["containerPort"]
    mounts = {m["mountPath"]: m["name"] for m in v.container["volumeMounts"]}
    assert str(settings.data_dir) in mounts  # the data dir is a volume (the root filesystem is read-only)
    assert image_env()["CTXGATE_DATA_DIR"] == str(settings.data_dir)
    assert str(settings.data_dir) in containerfile()["VOLUME"][-1]


def test_more_than_one_replica_means_shared_stores() -> None:
    variants = {name: load_variant(path) for name, path in VARIANTS.items()}
    assert variants["base"].replicas == 1 and variants["scale-out"].replicas > 1
    for name, v in variants.items():
        volumes = {vol["name"]: vol for vol in v.pod["volumes"]}
        data = volumes[{m["mountPath"]: m["name"] for m in v.container["volumeMounts"]}[v.config["CTXGATE_DATA_DIR"]]]
        pvcs = [k for k in v.kinds if k[0] == "PersistentVolumeClaim"]
        if v.replicas > 1:
            assert v.config["CTXGATE_DECISION_STORE"] == "redis", name
            assert v.config["CTXGATE_LEDGER_STORE"] == "postgres", name
            env = {e["name"] for e in v.container["env"]}
            assert {"CTXGATE_REDIS_URL", "CTXGATE_POSTGRES_DSN"} <= env
            assert "emptyDir" in data and "persistentVolumeClaim" not in data and pvcs == []
        else:
            # SQLite on a ReadWriteOnce claim: never two pods at once, even during a rollout
            assert v.deployment["spec"]["strategy"]["type"] == "Recreate"
            assert data["persistentVolumeClaim"]["claimName"] == pvcs[0][1]


# --- secrets --------------------------------------------------------------------------------


def test_secrets_come_only_from_secret_key_refs() -> None:
    secret_names = secret_env_names()
    assert secret_names == {"CTXGATE_AUTH_TOKEN", "CTXGATE_REDIS_URL", "CTXGATE_POSTGRES_DSN"}
    assert not secret_names & set(image_env())
    example = secret_example()
    refs = 0
    for path in K8S.rglob("*.yaml"):
        for doc in docs_of(path):
            if doc["kind"] == "ConfigMap":
                data = doc.get("data", {})
                assert not secret_names & set(data), path
                for value in data.values():  # no credentials in a URL either
                    assert not re.search(r"://[^/\s]*:[^/\s]*@", str(value)), path
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                for e in container.get("env", []):
                    if e["name"] in secret_names:
                        ref = e["valueFrom"]["secretKeyRef"]
                        assert f"{ref['name']}/{ref['key']}" in example
                        refs += 1
    assert refs == 3


# --- routes and ports -----------------------------------------------------------------------


def test_probe_and_scrape_paths_are_real_routes(tmp_path: Path) -> None:
    v = load_variant(BASE)
    c = v.container
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    probes = {c[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe", "startupProbe")}
    health = re.findall(r"https?://[^/'\"]+(/[\w/-]+)", containerfile()["HEALTHCHECK"][-1])
    assert health == ["/health"]
    annotations = v.deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    with TestClient(create_app(Settings(data_dir=tmp_path, auth_token="t0ken"))) as client:
        for path in probes | set(health):
            assert client.get(path).status_code == 200, path  # probes send no token
        scrape = annotations["prometheus.io/path"]
        assert client.get(scrape).status_code == 401
        r = client.get(scrape, headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 200 and "ctxgate_" in r.text


def test_ports_agree() -> None:
    v = load_variant(BASE)
    (port,) = v.container["ports"]
    (svc,) = [d for d in docs_of(BASE / "service.yaml") if d["kind"] == "Service"]
    (sp,) = svc["spec"]["ports"]
    target = sp["targetPort"]
    assert target in (port["name"], port["containerPort"])
    assert sp["port"] == port["containerPort"] == 8787
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert v.container[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    assert int(v.deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == 8787
    assert int(v.config["CTXGATE_PORT"]) == int(image_env()["CTXGATE_PORT"]) == 8787
    assert containerfile()["EXPOSE"] == ["8787"]
    (route,) = docs_of(OPENSHIFT / "route.yaml")
    assert route["spec"]["to"]["name"] == svc["metadata"]["name"]
    assert route["spec"]["port"]["targetPort"] == sp["name"]
    # the selectors pick the pods
    labels = v.deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert v.deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (pdb,) = docs_of(BASE / "pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- image and pod security -----------------------------------------------------------------


def test_containerfile_is_a_small_non_root_image() -> None:
    cf = containerfile()
    assert cf["FROM"] == ["python:3.11-slim AS build", "python:3.11-slim"]
    user = cf["USER"][-1]
    assert user.isdigit() and int(user) > 0  # numeric: runAsNonRoot can check it
    text = CONTAINERFILE.read_text()
    runtime = text.split("\nFROM python:3.11-slim\n", 1)[1]
    assert "COPY --from=build /opt/ctxgate /opt/ctxgate" in runtime
    assert not re.search(r"apt-get|gcc|build-essential|pip install", runtime)
    # the data dir belongs to group 0 and is group-writable (OpenShift's random UID has GID 0)
    assert re.search(rf"chown {user}:0 /data", runtime) and "chmod 0775 /data" in runtime
    assert "--gid 0" in runtime


def test_pod_runs_locked_down_with_limits() -> None:
    for path in VARIANTS.values():
        v = load_variant(path)
        assert v.pod["securityContext"]["runAsNonRoot"] is True
        sc = v.container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        res = v.container["resources"]
        assert {"cpu", "memory"} <= res["requests"].keys() and {"cpu", "memory"} <= res["limits"].keys()
        assert "/tmp" in {m["mountPath"] for m in v.container["volumeMounts"]}


# --- the real renderer, where installed -----------------------------------------------------


def kustomize(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_what_the_checks_above_read(tmp_path: Path) -> None:
    for path in VARIANTS.values():
        rendered = kustomize(path)
        v = load_variant(path)
        kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
        assert kinds == sorted(v.kinds)
        (cm,) = [d for d in rendered if d["kind"] == "ConfigMap"]
        assert cm["data"] == v.config
        (dep,) = [d for d in rendered if d["kind"] == "Deployment"]
        assert dep["spec"]["replicas"] == v.replicas
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert sorted(c["env"], key=lambda e: e["name"]) == sorted(v.container["env"], key=lambda e: e["name"])
        assert dep["spec"]["template"]["spec"]["volumes"] == v.pod["volumes"]
    # OpenShift on top of the scale-out overlay: a Route, and no fixed UID or fsGroup
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(SCALE_OUT, tmp_path)],
        "components": [os.path.relpath(OPENSHIFT, tmp_path)],
    }))
    rendered = kustomize(tmp_path)
    assert [d["metadata"]["name"] for d in rendered if d["kind"] == "Route"] == ["ctxgate"]
    (dep,) = [d for d in rendered if d["kind"] == "Deployment"]
    sc = dep["spec"]["template"]["spec"]["securityContext"]
    assert sc["runAsNonRoot"] is True and not {"runAsUser", "fsGroup"} & sc.keys()
    assert dep["spec"]["replicas"] > 1


def test_deploy_doc_names_real_paths_and_secret_keys() -> None:
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    paths = set(re.findall(r"\bdeploy/[\w./-]*[\w]", doc))
    assert {"deploy/Containerfile", "deploy/kubernetes/base", "deploy/kubernetes/overlays/scale-out"} <= paths
    assert [p for p in paths if not (ROOT / p).exists()] == []
    keys = set(re.findall(r"--from-literal=([\w-]+)=", doc))
    assert keys == {k.split("/", 1)[1] for k in secret_example()}
