"""Validates everything under deploy/ (and the root Dockerfile) without a cluster.

Run it through deploy/tests/validate, which provides the Python packages. Each check prints
one line; the run ends with a summary and exits non-zero if any check failed.

Tools it runs: `kubectl kustomize` (required; scripts/bootstrap installs kubectl),
shellcheck and yamllint (from the venv), and where installed `nats-server` (NATS config and
permissions against a server on 127.0.0.1 only), `terraform fmt`, `packer`, `vmagent`.

Environment:
  PLATFORM_SCHEMAS_DIR  folder of upstream CRD files (default: ../shared/schemas beside the
                        repository); when absent, the CRD schema checks are skipped, not failed
  K8S_VERSION           Kubernetes version for the built-in kinds (default 1.33.0)
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import hcl2
import jsonschema
import kubernetes_validate
import promql_parser
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kyverno_lite  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = os.environ.get("K8S_VERSION", "1.33.0")
SCHEMAS = Path(os.environ.get("PLATFORM_SCHEMAS_DIR", ROOT.parent / "shared" / "schemas"))

OVERLAYS = sorted(p for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
# Kustomizations rendered and validated like the overlays (not Argo-managed overlays of base).
EXTRA_KUSTOMIZATIONS = [DEPLOY / "observability"]
# Plain manifests applied with kubectl or Argo CD, not through kustomize.
PLAIN_MANIFESTS = sorted((DEPLOY / "argocd").glob("*.yaml")) + sorted((DEPLOY / "cluster").glob("*.yaml"))
# Kinds with no schema available offline; they get the structural checks in this file only.
NO_SCHEMA_KINDS = {("helm.cattle.io", "HelmChartConfig"), ("traefik.io", "Middleware"),
                   ("security.kubearmor.com", "KubeArmorPolicy")}

# The runtime's Prometheus metrics (what the Rust side exports; see the brief in README).
METRICS = {
    "platform_requests_total", "platform_request_duration_seconds_bucket",
    "platform_request_duration_seconds_sum", "platform_request_duration_seconds_count",
    "platform_cold_loads_total", "platform_traps_total", "platform_in_flight_requests",
    "platform_resident_modules", "platform_pooled_instances",
}
PARTS = {"runtime", "control", "worker"}
KNATIVE_RESERVED_PORTS = {8012, 8013, 8022, 8112, 9090, 9091}


# ---------------------------------------------------------------------------------------------
# reporting


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.section_counts: dict[str, int] = defaultdict(int)
        self.section = ""

    def start(self, title: str) -> None:
        self.section = title
        print(f"\n== {title}")

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        self.section_counts[self.section] += 1
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed.append(f"{self.section}: {what}: {detail}")
            print(f"  FAIL  {what}: {detail}")
        return ok

    def skip(self, what: str) -> None:
        self.skipped.append(f"{self.section}: {what}")
        print(f"  skip  {what}")

    def note(self, what: str) -> None:
        self.notes.append(what)
        print(f"  note  {what}")


R = Report()


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def name_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# Built-in kinds that are cluster-scoped (custom resources here are all namespaced except
# those listed; kustomize sets a namespace on every kind it does not know as cluster-scoped).
CLUSTER_SCOPED_KINDS = {
    "APIService", "CertificateSigningRequest", "ClusterRole", "ClusterRoleBinding",
    "ComponentStatus", "CSIDriver", "CSINode", "CustomResourceDefinition", "FlowSchema",
    "IngressClass", "MutatingWebhookConfiguration", "Namespace", "Node", "PersistentVolume",
    "PriorityClass", "PriorityLevelConfiguration", "RuntimeClass", "StorageClass",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration", "VolumeAttachment",
}


def is_builtin(obj: dict) -> bool:
    """Kinds of the Kubernetes API itself (core group or *.k8s.io), validated by kubernetes-validate."""
    group = group_of(obj)
    return "." not in group or group.endswith(".k8s.io")


def load_yaml_documents(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise ValueError(f"{path}: every document must be a Kubernetes object")
    return docs


def group_of(obj: dict) -> str:
    api = obj.get("apiVersion", "")
    return api.split("/", 1)[0] if "/" in api else ""


# ---------------------------------------------------------------------------------------------
# YAML lint and rendering


def yamllint_all() -> None:
    R.start("YAML syntax and style (yamllint)")
    files = sorted(p for p in DEPLOY.rglob("*.yaml") if "/.terraform/" not in str(p))
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "-f", "parsable", "-c", str(DEPLOY / "tests" / "yamllint.yaml"),
         *map(str, files)], capture_output=True, text=True)
    R.check(proc.returncode == 0, f"{len(files)} YAML files lint clean", proc.stdout.strip()[:2000])


def kubectl_binary() -> str | None:
    """kubectl from PATH, or the one scripts/bootstrap installs under target/tools when it
    cannot write to /usr/local/bin."""
    return shutil.which("kubectl") or shutil.which("kubectl", path=str(ROOT / "target" / "tools" / "bin"))


def check_kubectl() -> str | None:
    R.start("kubectl kustomize")
    kubectl = kubectl_binary()
    if not R.check(kubectl is not None, "kubectl is installed (scripts/bootstrap installs it)",
                   "kubectl not found: run `. scripts/bootstrap`"):
        return None
    proc = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        R.check(False, "kubectl version --client", (proc.stdout + proc.stderr)[-500:])
        return None
    client = (info.get("clientVersion") or {}).get("gitVersion", "?")
    kustomize = info.get("kustomizeVersion", "")
    # Components, `labels:` and `patches:` need kustomize v5 semantics (kubectl >= 1.27).
    R.check(kustomize.startswith("v5."), f"kubectl {client} embeds kustomize {kustomize or '?'} (v5 needed)")
    return kubectl


def render(kubectl: str, directory: Path) -> list[dict] | None:
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        R.check(False, f"kubectl kustomize {rel(directory)}", proc.stderr.strip()[:1500])
        return None
    try:
        objs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    except yaml.YAMLError as e:
        R.check(False, f"kubectl kustomize {rel(directory)} output parses", str(e)[:500])
        return None
    R.check(True, f"kubectl kustomize {rel(directory)}: {len(objs)} objects")
    return objs


# ---------------------------------------------------------------------------------------------
# schemas


def _strict(schema):
    """OpenAPI from a CRD, made to refuse unknown fields as `kubectl apply` (strict) does."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-validations")}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        if schema.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_strict(x) for x in schema]
    return schema


def load_crd_schemas() -> dict:
    schemas: dict = {}
    if not SCHEMAS.is_dir():
        return schemas
    for f in sorted(SCHEMAS.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                schema = _strict(v["schema"]["openAPIV3Schema"])
                # The API server always accepts apiVersion, kind and metadata at the root,
                # whether the CRD's schema lists them or not (Knative Eventing's do not).
                props = schema.setdefault("properties", {})
                props.setdefault("apiVersion", {"type": "string"})
                props.setdefault("kind", {"type": "string"})
                props.setdefault("metadata", {"type": "object"})
                schemas[(spec["group"], v["name"], spec["names"]["kind"])] = (
                    jsonschema.Draft4Validator(schema), f.name, spec.get("scope"))
    return schemas


DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def validate_object(obj: dict, crds: dict, where: str) -> None:
    group = group_of(obj)
    version = obj["apiVersion"].split("/")[-1]
    kind = obj["kind"]
    label = f"{where}: {name_of(obj)}"
    meta = obj.get("metadata") or {}
    if not DNS_SUBDOMAIN.match(meta.get("name", "")):
        R.check(False, label, f"metadata.name {meta.get('name')!r} is not a DNS-1123 name")
        return
    if is_builtin(obj):
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            R.check(True, f"{label} (Kubernetes {K8S_VERSION} schema, strict)")
        except kubernetes_validate.ValidationError as e:
            R.check(False, label, str(e).splitlines()[0])
        except kubernetes_validate.SchemaNotFoundError:
            R.check(False, label, f"no Kubernetes {K8S_VERSION} schema for {obj['apiVersion']} {kind}")
        return
    if (group, kind) in NO_SCHEMA_KINDS:
        R.skip(f"{label}: no schema for {group}/{kind} offline (its structure is checked by this file's own checks)")
        return
    if not crds:
        R.skip(f"{label}: CRD schema check ({SCHEMAS} absent)")
        return
    entry = crds.get((group, version, kind))
    if entry is None:
        R.check(False, label, f"no CRD schema for {obj['apiVersion']} {kind} in {SCHEMAS}")
        return
    validator, source, scope = entry
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    detail = "; ".join(f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:3])
    ok = R.check(not errors, f"{label} (CRD schema {source}, strict)", detail)
    if ok and scope == "Cluster" and meta.get("namespace"):
        R.check(False, label, "cluster-scoped kind carries a namespace")


# ---------------------------------------------------------------------------------------------
# consistency of one rendered overlay


def pod_specs(objs: list[dict]):
    """(object, pod metadata, pod spec) for every workload, Knative Services included."""
    for o in objs:
        kind = o["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            t = o["spec"]["template"]
            yield o, t.get("metadata") or {}, t["spec"]
        elif kind == "Service" and group_of(o) == "serving.knative.dev":
            t = o["spec"]["template"]
            yield o, t.get("metadata") or {}, t["spec"]


def part_of(container: dict, pod_meta: dict | None = None) -> str | None:
    """runtime, control or worker from the subcommand; `events` for the runtime that serves
    only the events listener (deploy/components/eventing, labelled component: events)."""
    args = container.get("args") or []
    part = args[0] if args and args[0] in PARTS else None
    labels = (pod_meta or {}).get("labels") or {}
    if part == "runtime" and labels.get("app.kubernetes.io/component") == "events":
        return "events"
    return part


def env_of(container: dict, objs: list[dict]) -> dict:
    """The environment the container gets: envFrom ConfigMaps, then env (literal values)."""
    env: dict = {}
    cms = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef")
        if ref and ref["name"] in cms:
            env.update(cms[ref["name"]].get("data") or {})
    for e in container.get("env") or []:
        env[e["name"]] = e.get("value", "<from " + ",".join(e.get("valueFrom", {})) + ">")
    return env


def secret_keys(objs: list[dict]) -> dict:
    """Secret name -> keys, for Secrets, SealedSecrets and CloudNativePG's generated Secrets."""
    keys: dict = {}
    for o in objs:
        name = o["metadata"]["name"]
        if o["kind"] == "Secret":
            keys[name] = set(o.get("data") or {}) | set(o.get("stringData") or {})
        elif o["kind"] == "SealedSecret":
            keys[name] = set(o["spec"].get("encryptedData") or {})
        elif o["kind"] == "Cluster" and group_of(o) == "postgresql.cnpg.io":
            keys[f"{name}-app"] = {"username", "password", "host", "port", "dbname", "uri",
                                   "jdbc-uri", "pgpass", "fqdn-uri", "fqdn-jdbc-uri"}
    return keys


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def duration_seconds(text: str) -> float:
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def check_overlay(name: str, objs: list[dict], features: dict) -> None:
    by_kind = defaultdict(dict)
    for o in objs:
        by_kind[(group_of(o), o["kind"])][o["metadata"]["name"]] = o
    secrets = secret_keys(objs)
    configmaps = by_kind[("", "ConfigMap")]
    pvcs = set(by_kind[("", "PersistentVolumeClaim")])
    services = by_kind[("", "Service")]
    templates = [(o, m, s) for o, m, s in pod_specs(objs)]
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] not in CLUSTER_SCOPED_KINDS}
    R.check(namespaces == {"platform"}, f"{name}: every namespaced object is in `platform`", str(namespaces))

    parts_seen: dict = {}
    images = set()
    for obj, pmeta, spec in templates:
        wl = name_of(obj)
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        claim_templates = {t["metadata"]["name"] for t in (obj["spec"].get("volumeClaimTemplates") or [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                R.check(claim in pvcs, f"{name}: {wl} volume {v['name']} claims an existing PVC", claim)
            if "configMap" in v:
                R.check(v["configMap"]["name"] in configmaps, f"{name}: {wl} volume {v['name']} ConfigMap exists",
                        v["configMap"]["name"])
        for c in spec["containers"] + (spec.get("initContainers") or []):
            cname = f"{wl}[{c['name']}]"
            image = c.get("image", "")
            R.check(bool(re.search(r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", image)) and not image.endswith(":latest"),
                    f"{name}: {cname} image {image} is pinned (tag or digest, not latest)")
            res = c.get("resources") or {}
            R.check("memory" in (res.get("requests") or {}) and "memory" in (res.get("limits") or {}),
                    f"{name}: {cname} has memory request and limit")
            mounts = c.get("volumeMounts") or []
            for m in mounts:
                R.check(m["name"] in volumes or m["name"] in claim_templates,
                        f"{name}: {cname} mount {m['mountPath']} has a volume", m["name"])
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if "secretKeyRef" in vf:
                    ref = vf["secretKeyRef"]
                    R.check(ref["key"] in secrets.get(ref["name"], set()),
                            f"{name}: {cname} env {e['name']} <- Secret {ref['name']}[{ref['key']}] exists")
                if "configMapKeyRef" in vf:
                    ref = vf["configMapKeyRef"]
                    R.check(ref["key"] in (configmaps.get(ref["name"], {}).get("data") or {}),
                            f"{name}: {cname} env {e['name']} <- ConfigMap {ref['name']}[{ref['key']}] exists")
            for src in c.get("envFrom") or []:
                if "configMapRef" in src:
                    R.check(src["configMapRef"]["name"] in configmaps,
                            f"{name}: {cname} envFrom ConfigMap {src['configMapRef']['name']} exists")
                if "secretRef" in src:
                    R.check(src["secretRef"]["name"] in secrets,
                            f"{name}: {cname} envFrom Secret {src['secretRef']['name']} exists")
            port_names = {p.get("name") for p in c.get("ports") or []}
            for probe_kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = ((c.get(probe_kind) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str):
                    R.check(port in port_names, f"{name}: {cname} {probe_kind} port {port} is declared")
            # A read-only root filesystem: every directory the process is told to write to
            # must be a mounted volume.
            env = env_of(c, objs)
            if (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
                writable = [m["mountPath"] for m in mounts if not m.get("readOnly")]
                for key, value in env.items():
                    path = None
                    if key.endswith("_DIR") and str(value).startswith("/"):
                        path = value
                    elif str(value).startswith("file://"):
                        path = urlparse(value).path
                    if path:
                        R.check(any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable),
                                f"{name}: {cname} {key}={value} is on a writable volume")
            part = part_of(c, pmeta)
            if part:
                parts_seen[part] = (obj, c, env)
                images.add(image)

    R.check(PARTS <= set(parts_seen), f"{name}: runtime, control and worker are all deployed", str(sorted(parts_seen)))
    R.check(len(images) == 1, f"{name}: every part runs the same image", str(sorted(images)))
    # gVisor: once the overlay has the RuntimeClass, everything that runs guests uses it.
    if "gvisor" in by_kind[("node.k8s.io", "RuntimeClass")]:
        for part in ("runtime", "events"):
            if part in parts_seen:
                obj = parts_seen[part][0]
                R.check(obj["spec"]["template"]["spec"].get("runtimeClassName") == "gvisor",
                        f"{name}: {name_of(obj)} ({part}) runs under gVisor like the rest of the runtime")

    # Services select a workload and name ports it declares; Ingresses point at Services.
    for svc in services.values():
        if svc["spec"].get("type") == "ExternalName":
            R.check(bool(svc["spec"].get("externalName")), f"{name}: Service {svc['metadata']['name']} has an externalName")
            continue
        sel = svc["spec"].get("selector") or {}
        matching = [(o, m, s) for o, m, s in templates if labels_match(sel, m.get("labels") or {})]
        R.check(bool(matching), f"{name}: Service {svc['metadata']['name']} selects a workload", str(sel))
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            declared = {(q.get("name"), q["containerPort"]) for _, _, s in matching for c in s["containers"]
                        for q in c.get("ports") or []}
            ok = any(tp in (n, num) for n, num in declared)
            R.check(ok, f"{name}: Service {svc['metadata']['name']} port {p['port']} -> {tp} is declared by its pods")
    for ing in by_kind[("networking.k8s.io", "Ingress")].values():
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                b = path["backend"]["service"]
                svc = services.get(b["name"])
                ports = {p.get("name") for p in (svc or {}).get("spec", {}).get("ports", [])} | \
                        {p["port"] for p in (svc or {}).get("spec", {}).get("ports", [])}
                want = b["port"].get("name", b["port"].get("number"))
                R.check(svc is not None and want in ports,
                        f"{name}: Ingress {ing['metadata']['name']} {rule['host']} -> Service {b['name']}:{want}")
    for pdb in by_kind[("policy", "PodDisruptionBudget")].values():
        sel = pdb["spec"]["selector"]["matchLabels"]
        R.check(any(labels_match(sel, m.get("labels") or {}) for _, m, _ in templates),
                f"{name}: PodDisruptionBudget {pdb['metadata']['name']} selects a workload")
        R.check("maxUnavailable" in pdb["spec"],
                f"{name}: PodDisruptionBudget {pdb['metadata']['name']} uses maxUnavailable (never blocks a drain at 1 replica)")
    for obj, pmeta, _ in templates:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            R.check(labels_match(obj["spec"]["selector"]["matchLabels"], pmeta.get("labels") or {}),
                    f"{name}: {name_of(obj)} selector matches its template")

    # SealedSecrets are bound to name and namespace (strict scope).
    for ss in by_kind[("bitnami.com", "SealedSecret")].values():
        tmeta = (ss["spec"].get("template") or {}).get("metadata") or {}
        R.check(tmeta.get("name", ss["metadata"]["name"]) == ss["metadata"]["name"],
                f"{name}: SealedSecret {ss['metadata']['name']} template keeps its name")
        placeholders = [k for k, v in ss["spec"]["encryptedData"].items() if v.startswith("PLACEHOLDER")]
        if placeholders:
            R.note(f"{name}: SealedSecret {ss['metadata']['name']} holds placeholders for {placeholders}: seal real values (README)")

    # The runtime's public URL is the Knative host ({service}.{namespace}.{domain}), which the
    # runtime Ingress must carry for Kourier to route it; tenants' wildcard Ingress gets it by
    # the Host rewrite of its Traefik middleware.
    if "runtime" in parts_seen:
        ksvc, _, env = parts_seen["runtime"]
        public = urlparse(env.get("PLATFORM_PUBLIC_URL", "")).hostname or ""
        prefix = f"{ksvc['metadata']['name']}.{ksvc['metadata']['namespace']}."
        R.check(public.startswith(prefix), f"{name}: PLATFORM_PUBLIC_URL host {public} is the Knative host {prefix}<domain>")
        check_hosts(name, objs, by_kind, services, public, parts_seen)

    # What each part must be given (flags/env of the `platform` binary).
    if PARTS <= set(parts_seen):
        check_parts(name, parts_seen, services, features)
        check_secrets_key(name, parts_seen["control"], secrets)
    # Guests' outbound HTTP never reaches the cluster's own ranges, even where the network
    # policy would let a packet through (the runtime checks every connect against these).
    internet = next((o for o in objs if o.get("kind") == "NetworkPolicy"
                     and o["metadata"]["name"] == "platform-runtime-egress-internet"), None)
    if internet is not None:
        declared = [c.strip() for c in (internet["metadata"].get("annotations") or {})
                    .get("platform.dev/cluster-cidrs", "").split(",") if c.strip()]
        for part in ("runtime", "events"):
            if part in parts_seen:
                deny = [c.strip() for c in str(parts_seen[part][2].get("PLATFORM_OUTBOUND_DENY", "")).split(",")
                        if c.strip()]
                R.check(bool(declared) and set(declared) <= set(deny),
                        f"{name}: {part} PLATFORM_OUTBOUND_DENY holds the cluster's CIDRs {declared}", str(deny))
    if "events" in parts_seen and "runtime" in parts_seen:
        check_events(name, parts_seen, services, objs)


MIDDLEWARE_ANNOTATION = "traefik.ingress.kubernetes.io/router.middlewares"


def _under(host: str, domain: str) -> bool:
    """host is domain or one of its subdomains."""
    return host == domain or host.endswith("." + domain)


def check_hosts(name: str, objs: list[dict], by_kind: dict, services: dict, public: str, parts: dict) -> None:
    """Which host reaches what: the dashboard on a host of its own; the runtime's Knative host;
    tenants' wildcard <app>--<tenant>.<PLATFORM_BASE_DOMAIN> through Traefik's Host rewrite."""
    ingresses = by_kind[("networking.k8s.io", "Ingress")].values()
    middlewares = by_kind[("traefik.io", "Middleware")]
    rules = [(ing, r) for ing in ingresses for r in ing["spec"]["rules"]]

    def backend_type(rule):
        names = {p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
        return {services.get(n, {}).get("spec", {}).get("type", "ClusterIP") for n in names}, names

    to_gateway = [(ing, r) for ing, r in rules if "ExternalName" in backend_type(r)[0]]
    dashboard = [r["host"] for ing, r in rules if "platform-control" in backend_type(r)[1]]
    plain = [r["host"] for ing, r in to_gateway if MIDDLEWARE_ANNOTATION not in (ing["metadata"].get("annotations") or {})]
    R.check(plain == [public], f"{name}: the Ingress to Kourier without a Host rewrite serves exactly the public host",
            str(plain))
    base_domain = parts["runtime"][2].get("PLATFORM_BASE_DOMAIN", "")
    R.check(bool(re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", base_domain)) and "." in base_domain,
            f"{name}: PLATFORM_BASE_DOMAIN is a domain name ({base_domain!r})")
    wildcard = [(ing, r) for ing, r in to_gateway if r["host"].startswith("*.")]
    R.check([r["host"] for _, r in wildcard] == [f"*.{base_domain}"],
            f"{name}: one wildcard Ingress serves *.{base_domain} (tenants' default addresses)", str([r["host"] for _, r in wildcard]))
    for ing, r in wildcard:
        refs = [x.strip() for x in (ing["metadata"].get("annotations") or {}).get(MIDDLEWARE_ANNOTATION, "").split(",") if x.strip()]
        ns = ing["metadata"]["namespace"]
        found = [middlewares.get(ref[len(ns) + 1:-len("@kubernetescrd")]) for ref in refs
                 if ref.startswith(ns + "-") and ref.endswith("@kubernetescrd")]
        ok = R.check(len(refs) == 1 and len(found) == 1 and found[0] is not None,
                     f"{name}: Ingress {ing['metadata']['name']} uses a Middleware of its namespace ({refs})")
        if ok:
            headers = ((found[0].get("spec") or {}).get("headers") or {}).get("customRequestHeaders") or {}
            R.check(headers == {"Host": public},
                    f"{name}: Middleware {found[0]['metadata']['name']} rewrites Host to the runtime's Knative host {public}",
                    str(headers))
    # The dashboard's session cookie is host-only: its host must not be, or be a parent of, a
    # host tenants' apps are served on, nor lie under one.
    tenant_domains = [public, base_domain]
    R.check(bool(dashboard), f"{name}: the dashboard (platform-control) has an Ingress host")
    for d in dashboard:
        clash = [t for t in tenant_domains if _under(t, d) or _under(d, t)]
        R.check(not clash, f"{name}: dashboard host {d} is neither a tenant host nor a parent or subdomain of one",
                f"clashes with {clash}")
    for part in ("runtime", "events"):
        if part in parts:
            R.check(parts[part][2].get("PLATFORM_TRUST_FORWARDED_HOST") == "true",
                    f"{name}: {part} honours X-Forwarded-Host (PLATFORM_TRUST_FORWARDED_HOST=true, set by Traefik)")
    if "control" in parts:
        R.check("PLATFORM_TRUST_FORWARDED_HOST" not in parts["control"][2],
                f"{name}: control does not take X-Forwarded-Host (only the runtime needs it)")
    for mw in middlewares.values():
        spec = mw.get("spec") or {}
        headers = spec.get("headers") or {}
        # No Traefik CRD schema offline: the one shape used here, checked strictly.
        R.check(mw["apiVersion"] == "traefik.io/v1alpha1" and set(spec) == {"headers"} and set(headers) == {"customRequestHeaders"}
                and all(isinstance(k, str) and isinstance(v, str) for k, v in headers["customRequestHeaders"].items()),
                f"{name}: Middleware {mw['metadata']['name']} is traefik.io/v1alpha1 with only headers.customRequestHeaders "
                "(structure checked here: no Traefik CRD schema offline)", str(spec))


def check_events(name: str, parts: dict, services: dict, objs: list[dict]) -> None:
    """The events listener: the runtime's program and settings, serving only
    POST /.platform/events on 8082, its traffic listener on loopback, and the Trigger
    delivering there."""
    obj, c, env = parts["events"]
    _, rc, renv = parts["runtime"]
    label = f"{name}: events listener {name_of(obj)}"
    R.check(obj["kind"] == "Deployment", f"{label} is a plain Deployment (a Knative Service allows one port)")
    R.check(env.get("PLATFORM_EVENTS_LISTEN") == "0.0.0.0:8082", f"{label} PLATFORM_EVENTS_LISTEN=0.0.0.0:8082")
    R.check(str(env.get("PLATFORM_LISTEN", "")).startswith("127.0.0.1:"),
            f"{label} binds its traffic listener to loopback (PLATFORM_LISTEN=127.0.0.1:...)", str(env.get("PLATFORM_LISTEN")))
    R.check(env.get("PLATFORM_EXCLUDE_DEDICATED") == "true", f"{label} PLATFORM_EXCLUDE_DEDICATED=true")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    R.check(8082 in ports.values() and 8080 not in ports.values(),
            f"{label} declares the events port 8082 and not the loopback traffic port", str(ports))
    # Same program, same settings as the runtime's Knative Service, apart from the listeners.
    listeners = {"PLATFORM_EVENTS_LISTEN", "PLATFORM_LISTEN", "PORT"}
    theirs = {k: v for k, v in renv.items() if k not in listeners}
    ours = {k: v for k, v in env.items() if k not in listeners}
    R.check(theirs == ours, f"{label} gets the runtime's environment and secrets",
            f"differs: {sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))}")
    R.check(c.get("securityContext") == rc.get("securityContext"), f"{label} has the runtime's container security context")
    R.check(sorted((m["mountPath"], m["name"]) for m in c.get("volumeMounts") or []) ==
            sorted((m["mountPath"], m["name"]) for m in rc.get("volumeMounts") or []), f"{label} mounts the runtime's volumes")
    R.check(c.get("image") == rc.get("image") and c.get("args") == rc.get("args"), f"{label} runs the runtime's image and command")
    svc = services.get("platform-events")
    sel = (svc or {}).get("spec", {}).get("selector") or {}
    R.check(svc is not None and labels_match(sel, obj["spec"]["template"]["metadata"].get("labels") or {})
            and any(p["port"] == 8082 and p.get("targetPort") in ("events", 8082) for p in svc["spec"]["ports"])
            and svc["spec"].get("type", "ClusterIP") == "ClusterIP",
            f"{name}: ClusterIP Service platform-events:8082 selects the events listener")
    want = "http://platform-events.platform.svc.cluster.local:8082/.platform/events"
    triggers = [o for o in objs if o["kind"] == "Trigger" and group_of(o) == "eventing.knative.dev"]
    R.check(bool(triggers) and all((t["spec"].get("subscriber") or {}) == {"uri": want} for t in triggers),
            f"{name}: every Trigger delivers to {want}", str([t["spec"].get("subscriber") for t in triggers]))
    ingress_backends = {p["backend"]["service"]["name"] for o in objs if o["kind"] == "Ingress"
                        for r in o["spec"]["rules"] for p in r["http"]["paths"]}
    R.check("platform-events" not in ingress_backends, f"{name}: no Ingress exposes the events listener")


def _service_for_url(url: str, services: dict, scheme: str) -> tuple[bool, str]:
    u = urlparse(url)
    if u.scheme != scheme:
        return False, f"scheme {u.scheme} != {scheme}"
    host = u.hostname or ""
    parts = host.split(".")
    if len(parts) < 2 or parts[1] != "platform":
        return False, f"{host} is not a Service in namespace platform"
    svc = services.get(parts[0])
    if not svc:
        return False, f"no Service {parts[0]}"
    ports = {p["port"] for p in svc["spec"]["ports"]}
    return (u.port in ports), f"port {u.port} not in {sorted(ports)}"


def check_parts(name: str, parts: dict, services: dict, features: dict) -> None:
    for part, (obj, c, env) in parts.items():
        label = f"{name}: {part}"
        ok, why = _service_for_url(env.get("PLATFORM_NATS_URL", ""), services, "nats")
        R.check(ok, f"{label} PLATFORM_NATS_URL points at the NATS Service", why)
        R.check(env.get("PLATFORM_LOG_FORMAT") == "json", f"{label} logs JSON")
        R.check(str(env.get("PLATFORM_DATA_DIR", "")).startswith("/"), f"{label} has an absolute PLATFORM_DATA_DIR")
        if part in ("control", "worker"):
            R.check("PLATFORM_DATABASE_URL" in env, f"{label} gets PLATFORM_DATABASE_URL")
            R.check(env.get("PLATFORM_BLOB_URL", "").split(":")[0] in ("file", "s3"), f"{label} has a file:// or s3:// blob URL")
            if env.get("PLATFORM_BLOB_URL", "").startswith("s3://"):
                secret_env = {s["secretRef"]["name"] for s in c.get("envFrom") or [] if "secretRef" in s}
                R.check(bool(secret_env) and {"AWS_REGION", "AWS_ENDPOINT"} <= set(env),
                        f"{label} S3 blob store has AWS_* settings and credentials")
        admin_port = 8081
        if part == "control":
            R.check(env.get("PLATFORM_LISTEN") == "0.0.0.0:8081", f"{label} listens on 0.0.0.0:8081")
            ok, why = _service_for_url(parts["runtime"][2].get("PLATFORM_CONTROL_URL", ""), services, "http")
            R.check(ok, f"{name}: runtime PLATFORM_CONTROL_URL points at the control Service", why)
        else:
            R.check(env.get("PLATFORM_ADMIN_LISTEN") == "0.0.0.0:8081", f"{label} admin listener on 0.0.0.0:8081")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            http = (c.get(probe) or {}).get("httpGet") or {}
            port = ports.get(http.get("port"), http.get("port"))
            R.check(http.get("path") == path and port == admin_port, f"{label} {probe} is GET {path} on {admin_port}",
                    f"{http}")
    check_knative(name, parts["runtime"], features)


def check_secrets_key(name: str, control, secrets: dict) -> None:
    """Control seals tenants' secrets with a key read from a file: PLATFORM_SECRETS_KEY_FILE
    must name a key of a Secret the overlay provides, mounted read-only (without it secrets
    are off, and `platform secrets set` fails)."""
    obj, c, env = control
    label = f"{name}: control secrets key"
    path = str(env.get("PLATFORM_SECRETS_KEY_FILE", ""))
    if not R.check(path.startswith("/"), f"{label}: PLATFORM_SECRETS_KEY_FILE is an absolute path", path):
        return
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"].get("volumes") or []}
    found = None
    for m in c.get("volumeMounts") or []:
        mount = m["mountPath"].rstrip("/") + "/"
        if path.startswith(mount) and "secret" in volumes.get(m["name"], {}):
            found = (m, volumes[m["name"]]["secret"], path[len(mount):])
    if not R.check(found is not None, f"{label}: {path} is on a Secret volume"):
        return
    m, vol, file = found
    R.check(m.get("readOnly") is True, f"{label}: the Secret volume is mounted read-only")
    secret = vol.get("secretName", "")
    R.check(secret in secrets, f"{label}: Secret {secret} is provided by the overlay", str(sorted(secrets)))
    items = {i["path"]: i["key"] for i in vol.get("items") or []}
    key = items.get(file, file if not items else None)
    R.check(key is not None and key in secrets.get(secret, set()),
            f"{label}: {file} is key {key} of Secret {secret}", str(sorted(secrets.get(secret, set()))))
    R.check(vol.get("defaultMode", 0o644) & 0o007 == 0, f"{label}: the key file is not world-readable",
            oct(vol.get("defaultMode", 0o644)))


def check_knative(name: str, runtime, features: dict) -> None:
    obj, c, env = runtime
    label = f"{name}: runtime Knative Service"
    R.check(group_of(obj) == "serving.knative.dev" and obj["kind"] == "Service", f"{label} is a serving.knative.dev Service")
    tmpl = obj["spec"]["template"]
    ann = (tmpl.get("metadata") or {}).get("annotations") or {}
    spec = tmpl["spec"]
    R.check(ann.get("autoscaling.knative.dev/min-scale") == "0", f"{label} scales to zero (min-scale \"0\")")
    R.check(ann.get("autoscaling.knative.dev/target", "").isdigit(), f"{label} has a target concurrency")
    R.check(duration_seconds(ann.get("autoscaling.knative.dev/scale-to-zero-pod-retention-period", "")) > 0,
            f"{label} has a scale-to-zero pod retention period")
    R.check(int(ann.get("autoscaling.knative.dev/max-scale", "0")) >= 1, f"{label} has max-scale >= 1")
    R.check(ann.get("platform.dev/token-generation", "").isdigit(),
            f"{label} has the platform.dev/token-generation annotation the runbook bumps")
    cc = spec.get("containerConcurrency")
    R.check(isinstance(cc, int) and cc > 0, f"{label} sets containerConcurrency")
    ports = [p for x in spec["containers"] for p in x.get("ports") or []]
    R.check(len(ports) == 1 and ports[0].get("name", "") in ("", "http1", "h2c")
            and ports[0]["containerPort"] not in KNATIVE_RESERVED_PORTS,
            f"{label} declares exactly one serving port (http1/h2c, not a queue-proxy port)", str(ports))
    R.check("PLATFORM_LISTEN" not in env, f"{label} leaves PLATFORM_LISTEN unset so $PORT is used")
    serving_port = ports[0]["containerPort"] if ports else None
    R.check(serving_port != 8081, f"{label} serving port differs from the admin port")
    grace = duration_seconds(str(env.get("PLATFORM_SHUTDOWN_GRACE", "30s")))
    R.check(spec.get("timeoutSeconds", 300) > grace,
            f"{label} timeoutSeconds (pod grace period) exceeds PLATFORM_SHUTDOWN_GRACE", f"{spec.get('timeoutSeconds')} <= {grace}")
    rp = c.get("readinessProbe") or {}
    if rp.get("periodSeconds") == 0:
        R.check("failureThreshold" not in rp and "timeoutSeconds" not in rp,
                f"{label} aggressive readiness probe (periodSeconds 0) sets no failureThreshold/timeoutSeconds")
    # Knative's webhook accepts only some pod fields, some of them behind config-features
    # flags (pkg/apis/serving/fieldmask.go and k8s_validation.go, Knative Serving 1.23).
    needs = []
    lp = ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("port")
    if isinstance(lp, int) and lp != serving_port:
        needs.append(("multi-container-probing", "liveness probe on a non-serving port"))
    for key in spec:
        if key in KNATIVE_POD_FIELDS:
            continue
        flag = KNATIVE_FLAGGED_POD_FIELDS.get(key)
        R.check(flag is not None, f"{label}: pod field {key} is accepted by Knative")
        if flag:
            needs.append((flag, f"pod field {key}"))
    if spec.get("automountServiceAccountToken") is not None:
        R.check(spec["automountServiceAccountToken"] is False, f"{label}: automountServiceAccountToken may only be false")
    for v in spec.get("volumes") or []:
        source = (set(v) - {"name"}).pop()
        flag = KNATIVE_VOLUME_FLAGS.get(source)
        R.check(flag is not None, f"{label}: volume {v['name']} ({source}) is a kind Knative accepts")
        if flag and flag != "default-enabled":
            needs.append((flag, f"{source} volume"))
        if flag == "default-enabled":
            R.check(features.get("kubernetes.podspec-volumes-emptydir", "enabled") != "disabled",
                    f"{label}: emptyDir volumes are not disabled in knative-features.yaml")
    for x in spec["containers"]:
        extra = set(x.get("securityContext") or {}) - KNATIVE_CONTAINER_SECURITY_FIELDS
        R.check(not extra, f"{label}: container {x['name']} securityContext uses only fields Knative accepts",
                str(sorted(extra)))
    for flag, why in needs:
        R.check(features.get(flag) == "enabled",
                f"{label}: {why} needs Knative flag {flag}, enabled in deploy/cluster/knative-features.yaml")


# Revision pod-spec fields Knative accepts without a feature flag, and those behind one.
KNATIVE_POD_FIELDS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks",
                      "automountServiceAccountToken", "containerConcurrency", "timeoutSeconds",
                      "responseStartTimeoutSeconds", "idleTimeoutSeconds"}
KNATIVE_FLAGGED_POD_FIELDS = {
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
    "hostIPC": "kubernetes.podspec-hostipc",
    "hostPID": "kubernetes.podspec-hostpid",
    "hostNetwork": "kubernetes.podspec-hostnetwork",
}
KNATIVE_VOLUME_FLAGS = {
    "secret": "", "configMap": "", "projected": "",
    "emptyDir": "default-enabled",
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "hostPath": "kubernetes.podspec-volumes-hostpath",
    "csi": "kubernetes.podspec-volumes-csi",
    "ephemeral": "kubernetes.podspec-volumes-ephemeral",
}
KNATIVE_CONTAINER_SECURITY_FIELDS = {"capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup",
                                     "runAsNonRoot", "allowPrivilegeEscalation", "seccompProfile", "privileged"}


# ---------------------------------------------------------------------------------------------
# Kyverno


# Knative's queue-proxy sidecar, as Knative Serving 1.23 adds it to every revision pod
# (pkg/reconciler/revision/resources/queue.go, queueSecurityContext).
QUEUE_PROXY = {
    "name": "queue-proxy",
    "image": "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:" + "0" * 64,
    "securityContext": {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    },
}
# A CloudNativePG 1.30 instance pod's security settings (pkg/specs: pod security context and
# CreateContainerSecurityContext with the default RuntimeDefault seccomp profile).
CNPG_CONTAINER_SC = {
    "capabilities": {"drop": ["ALL"]}, "privileged": False, "runAsNonRoot": True,
    "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def check_generated(crds: dict, features: dict, rendered: dict) -> None:
    """Objects the control plane sends to the cluster (dedicated mode), as kept in
    deploy/tests/generated/ by control/tests/all/dedicated.rs (which fails when they drift
    from the code)."""
    R.start("Generated by the control plane (deploy/tests/generated)")
    files = sorted((DEPLOY / "tests" / "generated").glob("*.json"))
    R.check(bool(files), "golden files of generated objects exist")
    for f in files:
        obj = json.loads(f.read_text(encoding="utf-8"))
        validate_object(obj, crds, rel(f))
        c = obj["spec"]["template"]["spec"]["containers"][0]
        check_knative(rel(f), (obj, c, env_of(c, [])), features)
        labels = obj["metadata"].get("labels") or {}
        R.check(labels.get("app.kubernetes.io/managed-by") == "platform-control" and "platform.dev/app-id" in labels,
                f"{rel(f)}: carries the owner labels garbage collection selects on")
        args = c.get("args") or []
        R.check(args[:2] == ["runtime", "--only-app"] and len(args) == 3, f"{rel(f)}: runs a runtime serving only its app")
        R.check(len(obj["metadata"]["name"]) <= 50, f"{rel(f)}: name leaves room for Knative's revision suffix")
    for directory, objs in rendered.items():
        if directory not in [o.resolve() for o in OVERLAYS]:
            continue
        cms = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
        image = (cms.get("platform-config", {}).get("data") or {}).get("PLATFORM_DEDICATED_IMAGE")
        runtime_images = {c.get("image") for o, _, spec in pod_specs(objs) if group_of(o) == "serving.knative.dev"
                          for c in spec.get("containers", [])}
        R.check(image in runtime_images, f"{directory.name}: PLATFORM_DEDICATED_IMAGE is the runtime's image",
                f"{image} not in {runtime_images}")
        # Knative Eventing's CRDs keep unknown spec fields, so the schema does not catch typos.
        brokers = {o["metadata"]["name"] for o in objs if o["kind"] == "Broker"}
        for t in (o for o in objs if o["kind"] == "Trigger"):
            spec = t.get("spec") or {}
            extra = set(spec) - {"broker", "brokerRef", "filter", "filters", "subscriber", "delivery"}
            R.check(not extra, f"{directory.name}: Trigger {t['metadata']['name']} has only Trigger spec fields", str(extra))
            R.check(spec.get("broker") in brokers, f"{directory.name}: Trigger {t['metadata']['name']} names a Broker of the overlay")
            sub = spec.get("subscriber") or {}
            R.check(set(sub) <= {"ref", "uri", "CACerts", "audience"},
                    f"{directory.name}: Trigger {t['metadata']['name']} subscriber has only Destination fields", str(sub))
        roles = [o for o in objs if o["kind"] == "Role"]
        R.check(any(any("serving.knative.dev" in r.get("apiGroups", []) and "patch" in r.get("verbs", [])
                        for r in role.get("rules", [])) for role in roles),
                f"{directory.name}: control may apply Knative Services (RBAC)")


def check_policies(name: str, objs: list[dict]) -> None:
    policies = [o for o in objs if o["kind"] in ("Policy", "ClusterPolicy") and group_of(o) == "kyverno.io"]
    if not R.check(len(policies) == 1, f"{name}: one Kyverno policy is rendered"):
        return
    policy = policies[0]
    R.check(policy["metadata"].get("namespace") == "platform", f"{name}: the Kyverno Policy lives in namespace platform")
    R.check(all(r["validate"].get("failureAction") == "Enforce" for r in policy["spec"]["rules"]),
            f"{name}: every rule enforces (failureAction: Enforce)")

    def verdict(obj):
        return [r for r in kyverno_lite.evaluate(policy, obj) if not r.passed], kyverno_lite.evaluate(policy, obj)

    for obj, _, spec in pod_specs(objs):
        failed, results = verdict(obj)
        R.check(bool(results) and not failed, f"{name}: Kyverno admits {name_of(obj)} ({len(results)} rules)",
                "; ".join(f"{r.rule}: {r.message}" for r in failed))
        if group_of(obj) == "serving.knative.dev":
            # The pod Knative creates for a revision: the user container plus queue-proxy.
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "revision-pod"},
                   "spec": {**copy.deepcopy(spec), "containers": copy.deepcopy(spec["containers"]) + [QUEUE_PROXY]}}
            failed, results = verdict(pod)
            R.check(bool(results) and not failed, f"{name}: Kyverno admits the Knative revision pod (runtime + queue-proxy)",
                    "; ".join(f"{r.rule}: {r.message}" for r in failed))
    cnpg = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "platform-db-1"},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 26, "seccompProfile": {"type": "RuntimeDefault"}},
                     "initContainers": [{"name": "bootstrap-controller", "securityContext": CNPG_CONTAINER_SC}],
                     "containers": [{"name": "postgres", "securityContext": CNPG_CONTAINER_SC}]}}
    failed, results = verdict(cnpg)
    R.check(bool(results) and not failed, f"{name}: Kyverno admits a CloudNativePG instance pod (its default security context)",
            "; ".join(f"{r.rule}: {r.message}" for r in failed))

    # Negative tests: break one setting at a time; exactly the matching rule must refuse it.
    control = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "platform-control")
    runtime = next(o for o in objs if o["kind"] == "Service" and group_of(o) == "serving.knative.dev")

    def mutate(obj, fn):
        o = copy.deepcopy(obj)
        spec = o["spec"]["template"]["spec"]
        fn(spec, spec["containers"][0].setdefault("securityContext", {}))
        return o

    def unset(*keys):
        """Removes keys from the pod's and the first container's securityContext."""
        def fn(spec, c):
            for k in keys:
                c.pop(k, None)
                (spec.get("securityContext") or {}).pop(k, None)
        return fn

    def setting(key, value):
        return lambda spec, c: c.__setitem__(key, value)

    cases = [
        ("pod spec without runAsNonRoot", control, "run-as-non-root", unset("runAsNonRoot")),
        ("container with runAsNonRoot: false under a non-root pod", control, "run-as-non-root",
         setting("runAsNonRoot", False)),
        ("container without allowPrivilegeEscalation", control, "disallow-privilege-escalation",
         unset("allowPrivilegeEscalation")),
        ("container allowing privilege escalation", control, "disallow-privilege-escalation",
         setting("allowPrivilegeEscalation", True)),
        ("container without capabilities", control, "drop-all-capabilities", unset("capabilities")),
        ("container dropping only NET_RAW", control, "drop-all-capabilities",
         setting("capabilities", {"drop": ["NET_RAW"]})),
        ("pod and container without seccomp profile", control, "seccomp-runtime-default", unset("seccompProfile")),
        ("container with Unconfined seccomp", control, "seccomp-runtime-default",
         setting("seccompProfile", {"type": "Unconfined"})),
        ("container without readOnlyRootFilesystem", control, "read-only-root-filesystem",
         unset("readOnlyRootFilesystem")),
        ("writable root filesystem", control, "read-only-root-filesystem", setting("readOnlyRootFilesystem", False)),
        ("Knative Service without runAsNonRoot", runtime, "ksvc-run-as-non-root", unset("runAsNonRoot")),
        ("Knative Service allowing privilege escalation", runtime, "ksvc-disallow-privilege-escalation",
         setting("allowPrivilegeEscalation", True)),
        ("Knative Service keeping capabilities", runtime, "ksvc-drop-all-capabilities", unset("capabilities")),
        ("Knative Service without seccomp profile", runtime, "ksvc-seccomp-runtime-default", unset("seccompProfile")),
        ("Knative Service with a writable root filesystem", runtime, "ksvc-read-only-root-filesystem",
         unset("readOnlyRootFilesystem")),
    ]
    for what, base, rule, fn in cases:
        failed, _ = verdict(mutate(base, fn))
        R.check([r.rule for r in failed] == [rule], f"{name}: Kyverno refuses a {what} (rule {rule})",
                f"failed rules: {[r.rule for r in failed]}")


# ---------------------------------------------------------------------------------------------
# NetworkPolicies


def _selector_matches(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes LabelSelector; {} selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Peer:
    """A pod (namespace, labels, IP, named ports) or an address outside the cluster."""

    def __init__(self, what: str, ip: str, namespace: str | None = None, labels: dict | None = None,
                 ports: dict | None = None):
        self.what, self.ip, self.namespace, self.labels, self.ports = what, ip, namespace, labels or {}, ports or {}

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def _peer_matches(rule_peer: dict, peer: Peer, policy_ns: str) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        addr = ipaddress.ip_address(peer.ip)
        net = ipaddress.ip_network(block["cidr"])
        return (addr.version == net.version and addr in net and
                not any(addr in ipaddress.ip_network(x) for x in block.get("except") or []
                        if ipaddress.ip_network(x).version == addr.version))
    if not peer.is_pod:
        return False
    if "namespaceSelector" in rule_peer:
        ns_labels = {"kubernetes.io/metadata.name": peer.namespace}
        if not _selector_matches(rule_peer["namespaceSelector"], ns_labels):
            return False
    elif peer.namespace != policy_ns:
        return False
    return _selector_matches(rule_peer.get("podSelector"), peer.labels)


def _port_matches(rule_ports: list | None, port: int, proto: str, target: Peer) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != proto:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            want = target.ports.get(want)
        if want is not None and want <= port <= p.get("endPort", want):
            return True
    return False


def _policy_types(policy: dict) -> list:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def netpol_allows(policies: list[dict], src: Peer, dst: Peer, port: int, proto: str = "TCP") -> bool:
    """Whether a connection is allowed by NetworkPolicy semantics: the source's egress
    policies (if any selects it) and the destination's ingress policies (if any selects it)
    must each have a rule allowing it."""
    def side(direction: str, subject: Peer, other: Peer, target: Peer) -> bool:
        if not subject.is_pod:
            return True
        selecting = [p for p in policies if p["metadata"].get("namespace") == subject.namespace
                     and direction.capitalize() in _policy_types(p)
                     and _selector_matches(p["spec"].get("podSelector"), subject.labels)]
        if not selecting:
            return True
        key = "to" if direction == "egress" else "from"
        for p in selecting:
            for rule in p["spec"].get(direction) or []:
                peers = rule.get(key)
                if (not peers or any(_peer_matches(x, other, p["metadata"]["namespace"]) for x in peers)) \
                        and _port_matches(rule.get("ports"), port, proto, target):
                    return True
        return False
    return side("egress", src, dst, dst) and side("ingress", dst, src, dst)


def check_network_policies(name: str, objs: list[dict]) -> None:
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    if not R.check(bool(policies), f"{name}: NetworkPolicies are rendered"):
        return
    # Every policy selects pods of the overlay (or, for dedicated runtimes, the generated ones).
    templates = [(o, m) for o, m, _ in pod_specs(objs)]
    generated = [json.loads(f.read_text(encoding="utf-8")) for f in sorted((DEPLOY / "tests" / "generated").glob("*.json"))]
    cnpg_pod = {"cnpg.io/cluster": "platform-db", "cnpg.io/podRole": "instance"}
    for p in policies:
        sel = p["spec"].get("podSelector") or {}
        hits = [name_of(o) for o, m in templates if _selector_matches(sel, m.get("labels") or {})]
        hits += ["CloudNativePG instance"] * _selector_matches(sel, cnpg_pod)
        R.check(bool(sel) and bool(hits), f"{name}: NetworkPolicy {p['metadata']['name']} selects {', '.join(hits) or 'nothing'}")
    # Pods as the manifests label them, and what surrounds them in a cluster.
    ip = iter(f"10.42.{i // 250}.{i % 250 + 2}" for i in range(10000))

    def pod(what, namespace, labels, ports=None):
        return Peer(what, next(ip), namespace, labels, ports)

    def of(kind, obj_name):
        for o, m, spec in pod_specs(objs):
            if o["kind"] == kind and o["metadata"]["name"] == obj_name:
                ports = {p.get("name"): p["containerPort"] for c in spec["containers"] for p in c.get("ports") or []}
                return pod(f"{kind} {obj_name}", "platform", m.get("labels") or {}, ports)
        return None

    control, worker = of("Deployment", "platform-control"), of("Deployment", "platform-worker")
    runtime, nats = of("Service", "platform-runtime"), of("StatefulSet", "nats")
    events = of("Deployment", "platform-events")
    db = pod("PostgreSQL instance", "platform", cnpg_pod)
    dedicated = [pod(f"dedicated {g['metadata']['name']}", "platform", g["spec"]["template"]["metadata"]["labels"])
                 for g in generated]
    operator = pod("CloudNativePG operator", "cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"})
    coredns = pod("CoreDNS", "kube-system", {"k8s-app": "kube-dns"})
    traefik = pod("Traefik", "kube-system", {"app.kubernetes.io/name": "traefik"})
    dispatcher = pod("Knative broker dispatcher", "knative-eventing", {"eventing.knative.dev/brokerRole": "filter"})
    vmagent = pod("vmagent", "observability", {"app.kubernetes.io/name": "vmagent"})
    stranger = pod("a pod in namespace default", "default", {"app": "other"})
    neighbour = pod("an unlabelled pod in namespace platform", "platform", {"app": "debug"})
    net = lambda what, addr: Peer(what, addr)  # noqa: E731
    guests = [p for p in [runtime, events, *dedicated] if p]
    cases = []
    for g in guests:
        cases += [
            (g, nats, 4222, "TCP", True), (g, coredns, 53, "UDP", True), (g, coredns, 53, "TCP", True),
            (g, control, 8081, "TCP", True), (g, db, 5432, "TCP", False), (g, worker, 8081, "TCP", False),
            (g, nats, 6222, "TCP", False), (g, traefik, 8000, "TCP", False), (g, dispatcher, 8080, "TCP", False),
            (g, net("the internet", "1.1.1.1"), 443, "TCP", True), (g, net("the internet", "8.8.8.8"), 80, "TCP", True),
            (g, net("cloud metadata", "169.254.169.254"), 80, "TCP", False),
            (g, net("link-local", "169.254.10.1"), 80, "TCP", False),
            (g, net("a pod IP", "10.42.3.7"), 8080, "TCP", False),
            (g, net("the API server's service IP", "10.43.0.1"), 443, "TCP", False),
            (g, net("a node's private address", "10.0.1.10"), 10250, "TCP", False),
            (g, net("RFC 1918 172.16/12", "172.16.0.1"), 80, "TCP", False),
            (g, net("RFC 1918 192.168/16", "192.168.1.1"), 80, "TCP", False),
            (g, net("shared address space", "100.64.0.1"), 80, "TCP", False),
            (g, net("an IPv6 address", "2606:4700::1111"), 443, "TCP", False),
        ]
    if events:
        cases += [(dispatcher, events, 8082, "TCP", True), (stranger, events, 8082, "TCP", False),
                  (neighbour, events, 8082, "TCP", False), (vmagent, events, 8081, "TCP", True),
                  (traefik, events, 8082, "TCP", False)]
    for client in (control, worker):
        cases += [(client, nats, 4222, "TCP", True), (client, db, 5432, "TCP", True),
                  (client, net("the internet", "1.1.1.1"), 443, "TCP", True)]
    cases += [
        (stranger, nats, 4222, "TCP", False), (neighbour, nats, 4222, "TCP", False), (traefik, nats, 4222, "TCP", False),
        (nats, nats, 6222, "TCP", True), (vmagent, nats, 8222, "TCP", True), (stranger, nats, 8222, "TCP", False),
        (stranger, db, 5432, "TCP", False), (neighbour, db, 5432, "TCP", False),
        (operator, db, 8000, "TCP", True), (operator, db, 5432, "TCP", True), (db, db, 5432, "TCP", True),
        (db, db, 8000, "TCP", True), (vmagent, db, 9187, "TCP", True), (stranger, db, 8000, "TCP", False),
        (pod("a pod labelled like the operator elsewhere", "default", {"app.kubernetes.io/name": "cloudnative-pg"}),
         db, 8000, "TCP", False),
    ]
    wrong = []
    for src, dst, port, proto, want in cases:
        if src is None or dst is None:
            continue
        if netpol_allows(policies, src, dst, port, proto) != want:
            wrong.append(f"{src.what} -> {dst.what}:{port}/{proto} should be {'allowed' if want else 'denied'}")
    R.check(not wrong, f"{name}: NetworkPolicies allow and deny {len(cases)} connections as intended "
            f"(runtime, events and {len(dedicated)} dedicated runtimes)", "; ".join(wrong[:6]))
    # The cluster's own ranges are excluded from the runtime's internet egress.
    internet = next((p for p in policies if p["metadata"]["name"] == "platform-runtime-egress-internet"), None)
    if R.check(internet is not None, f"{name}: platform-runtime-egress-internet exists"):
        declared = [c.strip() for c in internet["metadata"].get("annotations", {}).get("platform.dev/cluster-cidrs", "").split(",")
                    if c.strip()]
        blocks = [x["ipBlock"] for r in internet["spec"]["egress"] for x in r.get("to") or [] if "ipBlock" in x]
        excepted = [e for b in blocks for e in b.get("except") or []]
        R.check(len(declared) >= 2 and excepted[:len(declared)] == declared,
                f"{name}: the cluster's pod and service CIDRs {declared} head the internet egress exceptions", str(excepted[:3]))
        for must in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"):
            R.check(must in excepted, f"{name}: runtime internet egress excludes {must}")
        R.check(all(ipaddress.ip_network(b["cidr"]).version == 4 for b in blocks), f"{name}: no IPv6 egress for the runtime")


# ---------------------------------------------------------------------------------------------
# KubeArmor

# The KubeArmorPolicy structure (security.kubearmor.com/v1), from KubeArmor's CRD
# (deployments/CRD/KubeArmorPolicy.yaml): no CRD schema for it is kept offline, so this file
# checks the keys and formats the policies here use, strictly.
KA_ACTIONS = {"Allow", "Audit", "Block"}
KA_PATH = re.compile(r"^/+.*[^/]$")
KA_DIR = re.compile(r"^/$|^/.*/$")
KA_PROTOCOL = re.compile(r"(tcp|TCP|udp|UDP|raw|RAW|icmp|ICMP|icmpv6|ICMPV6|sctp|SCTP|stream|STREAM|dgram|DGRAM|rdm|RDM|"
                         r"seqpacket|SEQPACKET|dccp|DCCP|packet|PACKET|all|ALL)$")
KA_COMMON = {"severity", "tags", "message", "action"}
KA_MATCH = {
    "process": {"matchPaths": ({"path", "execname", "ownerOnly", "fromSource", "allowedArgs", "pts"} | KA_COMMON, "path"),
                "matchDirectories": ({"dir", "recursive", "ownerOnly", "fromSource", "pts"} | KA_COMMON, "dir"),
                "matchPatterns": ({"pattern", "ownerOnly"} | KA_COMMON, "pattern")},
    "file": {"matchPaths": ({"path", "readOnly", "ownerOnly", "fromSource", "pts"} | KA_COMMON, "path"),
             "matchDirectories": ({"dir", "recursive", "readOnly", "ownerOnly", "fromSource", "pts"} | KA_COMMON, "dir"),
             "matchPatterns": ({"pattern", "readOnly", "ownerOnly"} | KA_COMMON, "pattern")},
    "network": {"matchProtocols": ({"protocol", "fromSource", "pts"} | KA_COMMON, "protocol")},
}


def _kubearmor_structure(policy: dict) -> list[str]:
    errors = []
    spec = policy.get("spec") or {}
    extra = set(spec) - {"severity", "tags", "message", "selector", "process", "file", "network", "capabilities",
                         "syscalls", "action", "presets", "apparmor"}
    errors += [f"unknown spec.{k}" for k in sorted(extra)]
    if policy.get("apiVersion") != "security.kubearmor.com/v1":
        errors.append(f"apiVersion {policy.get('apiVersion')}")
    if spec.get("action") not in KA_ACTIONS:
        errors.append(f"action {spec.get('action')!r} not in {sorted(KA_ACTIONS)}")
    if not isinstance(spec.get("severity", 1), int) or not 1 <= spec.get("severity", 1) <= 10:
        errors.append("severity must be 1..10")
    selector = spec.get("selector") or {}
    errors += [f"unknown selector.{k}" for k in set(selector) - {"matchLabels", "matchExpressions"}]
    if not selector.get("matchLabels") or not all(isinstance(v, str) for v in selector["matchLabels"].values()):
        errors.append("selector.matchLabels must be a non-empty map of strings")
    for section, matches in KA_MATCH.items():
        body = spec.get(section)
        if body is None:
            continue
        errors += [f"unknown {section}.{k}" for k in set(body) - set(matches) - KA_COMMON]
        for match, (allowed, required) in matches.items():
            for i, item in enumerate(body.get(match) or []):
                where = f"{section}.{match}[{i}]"
                errors += [f"unknown {where}.{k}" for k in set(item) - allowed]
                if required not in item:
                    errors.append(f"{where} lacks {required}")
                value = str(item.get(required, ""))
                fmt = {"path": KA_PATH, "dir": KA_DIR, "protocol": KA_PROTOCOL}.get(required)
                if fmt and not fmt.fullmatch(value) and not fmt.match(value):
                    errors.append(f"{where}.{required} {value!r} has the wrong form")
                if required == "path" and len(value) > 200:
                    errors.append(f"{where}.path longer than 200")
                for flag in ("recursive", "readOnly", "ownerOnly"):
                    if flag in item and not isinstance(item[flag], bool):
                        errors.append(f"{where}.{flag} must be a boolean")
                if "action" in item and item["action"] not in KA_ACTIONS:
                    errors.append(f"{where}.action {item['action']!r}")
    return errors


def _kubearmor_selects(policy: dict, pod_labels: dict, container: str) -> bool:
    labels = dict((policy["spec"].get("selector") or {}).get("matchLabels") or {})
    containers = labels.pop("kubearmor.io/container.name", None)
    if containers is not None and container not in [c.strip() for c in containers.strip("[]").split(",")]:
        return False
    return all(pod_labels.get(k) == v for k, v in labels.items())


def check_kubearmor(name: str, objs: list[dict]) -> None:
    policies = [o for o in objs if o["kind"] == "KubeArmorPolicy"]
    if not policies:
        return
    R.start(f"KubeArmor policies of deploy/overlays/{name}")
    for p in policies:
        errors = _kubearmor_structure(p)
        R.check(not errors, f"{name}: KubeArmorPolicy {p['metadata']['name']} has KubeArmor's structure "
                "(checked here: no KubeArmor CRD schema offline)", "; ".join(errors))
    # Which containers the policies confine: exactly those running `platform runtime`.
    generated = [json.loads(f.read_text(encoding="utf-8")) for f in sorted((DEPLOY / "tests" / "generated").glob("*.json"))]
    workloads = [(o, m, s) for o, m, s in pod_specs(objs)] + \
        [(g, g["spec"]["template"]["metadata"], g["spec"]["template"]["spec"]) for g in generated]
    for o, m, spec in workloads:
        for c in spec["containers"]:
            runs_guests = (c.get("args") or [None])[0] == "runtime"
            for p in policies:
                sel = _kubearmor_selects(p, m.get("labels") or {}, c["name"])
                R.check(sel == runs_guests, f"{name}: {p['metadata']['name']} {'confines' if runs_guests else 'leaves alone'} "
                        f"{name_of(o)}[{c['name']}]")
    # Knative's queue-proxy shares the runtime's pods and must stay unconfined.
    runtime = next((m for o, m, _ in pod_specs(objs) if group_of(o) == "serving.knative.dev"), {})
    R.check(not any(_kubearmor_selects(p, runtime.get("labels") or {}, "queue-proxy") for p in policies),
            f"{name}: Knative's queue-proxy container is not selected")
    allow = [p for p in policies if p["spec"].get("action") == "Allow"]
    block = [p for p in policies if p["spec"].get("action") == "Block"]
    if R.check(len(allow) == 1 and len(block) == 1, f"{name}: one Allow (allowlist) and one Block policy"):
        a, b = allow[0]["spec"], block[0]["spec"]
        entry = re.search(r'ENTRYPOINT \["([^"]+)"\]', (ROOT / "Dockerfile").read_text(encoding="utf-8"))
        R.check([x["path"] for x in (a.get("process") or {}).get("matchPaths") or []] == [entry.group(1) if entry else None]
                and not (a.get("process") or {}).get("matchDirectories") and not (a.get("process") or {}).get("matchPatterns"),
                f"{name}: only the image's entrypoint {entry.group(1) if entry else '?'} may execute")
        dirs = (a.get("file") or {}).get("matchDirectories") or []
        R.check(any(d["dir"] == "/" and d.get("recursive") and d.get("readOnly") for d in dirs),
                f"{name}: the allowlist lets the whole filesystem be read, not written")
        writable = sorted(d["dir"] for d in dirs if not d.get("readOnly"))
        R.check(all(d.get("recursive") for d in dirs if not d.get("readOnly")), f"{name}: writable directories are recursive")
        R.check(writable == ["/tmp/", "/var/cache/platform/", "/var/lib/platform/"],
                f"{name}: writes allowed only under /var/lib/platform, /var/cache/platform and /tmp", str(writable))
        for o, m, spec in workloads:
            c = next((c for c in spec["containers"] if (c.get("args") or [None])[0] == "runtime"), None)
            if c is None:
                continue
            volumes = {v["name"]: v for v in spec.get("volumes") or []}
            mounts = [x["mountPath"].rstrip("/") + "/" for x in c.get("volumeMounts") or [] if "emptyDir" in volumes.get(x["name"], {})]
            R.check(all(any(mp.startswith(w) for w in writable) for mp in mounts) and
                    all(any(mp.startswith(w) for mp in mounts) for w in writable),
                    f"{name}: writable directories are exactly {name_of(o)}'s emptyDirs", str(mounts))
        bdirs = {d["dir"] for d in (b.get("file") or {}).get("matchDirectories") or [] if not d.get("readOnly")}
        R.check({"/var/run/secrets/kubernetes.io/serviceaccount/", "/run/secrets/kubernetes.io/serviceaccount/"} <= bdirs,
                f"{name}: service-account token paths are blocked")
        patterns = {x["pattern"] for x in (b.get("file") or {}).get("matchPatterns") or [] if not x.get("readOnly")}
        R.check("/proc/*/environ" in patterns, f"{name}: reading /proc/*/environ is blocked")
        protocols = {x["protocol"].lower() for x in (b.get("network") or {}).get("matchProtocols") or []}
        R.check("raw" in protocols, f"{name}: raw sockets are blocked")
    ns = next((o for o in objs if o["kind"] == "Namespace"), {})
    R.check((ns.get("metadata", {}).get("annotations") or {}).get("kubearmor-file-posture") == "block",
            f"{name}: namespace {ns.get('metadata', {}).get('name')} has kubearmor-file-posture: block (the allowlist enforces)")
    gvisor = [name_of(o) for o, _, s in pod_specs(objs) if s.get("runtimeClassName") == "gvisor"]
    R.check(not gvisor, f"{name}: KubeArmor is not paired with gVisor (it cannot see inside gVisor's sandbox)", str(gvisor))


# ---------------------------------------------------------------------------------------------
# NATS authentication and permissions


# Which NATS role each part connects as (env PLATFORM_NATS_USER / PLATFORM_NATS_PASSWORD from
# Secret platform-nats-<role>, keys user and password).
NATS_ROLE_OF_PART = {"control": "control", "worker": "worker", "runtime": "runtime", "events": "runtime"}
NATS_ROLES = ("control", "worker", "runtime", "publisher")
# What each role may and may not do, as agreed with the Rust side (deploy/README.md, NATS
# roles): (operation, subject, allowed). Run against a real nats-server on 127.0.0.1.
NATS_EXPECTATIONS = {
    "control": [
        ("pub", "platform.feed.v1", True), ("pub", "platform.modules.v1", True), ("pub", "_INBOX.abc.1", True),
        ("pub", "platform.obs.v1.app.log", False), ("pub", "orders.created", False), ("pub", "$JS.API.INFO", False),
        ("pub", "$KV.bucket.key", False), ("pub", "platform.feed.v2", False),
        ("sub", "platform.modules.v1", True), ("sub", "platform.obs.v1.>", True), ("sub", "platform.obs.v1.app.log", True),
        ("sub", "platform.feed.v1", True), ("sub", "_INBOX.>", True),
        ("sub", ">", False), ("sub", "orders.created", False), ("sub", "$JS.API.>", False), ("sub", "platform.>", False),
    ],
    "worker": [
        ("pub", "platform.modules.v1", True), ("pub", "_INBOX.abc", True), ("pub", "platform.feed.v1", True),
        ("pub", "platform.obs.v1.x", False), ("pub", "orders.created", False), ("pub", "platform.feed.v2", False),
        ("sub", "platform.modules.v1", True), ("sub", "_INBOX.>", True),
        ("sub", "platform.feed.v1", False), ("sub", "platform.obs.v1.>", False), ("sub", ">", False),
    ],
    "runtime": [
        ("pub", "platform.obs.v1.app.log", True), ("pub", "_INBOX.reply.1", True), ("pub", "$JS.API.STREAM.INFO.x", True),
        ("pub", "$KV.bucket.key", True), ("pub", "$JS.ACK.stream.consumer.1.2.3", True), ("pub", "$JS.FC.x.y", True),
        ("pub", "platform.feed.v1", False), ("pub", "platform.modules.v1", False), ("pub", "orders.created", False),
        ("pub", "platform.obs.v2", False), ("pub", "$SYS.REQ.SERVER.PING", False),
        ("sub", ">", True), ("sub", "orders.created", True), ("sub", "platform.feed.v1", True),
        ("sub", "platform.modules.v1", True), ("sub", "_INBOX.>", True),
    ],
    "publisher": [
        ("pub", "orders.created", True), ("pub", "tenant.a.b.c", True),
        ("pub", "platform.feed.v1", False), ("pub", "platform.obs.v1.x", False), ("pub", "platform.anything", False),
        ("pub", "$JS.API.INFO", False), ("pub", "$KV.bucket.key", False), ("pub", "$SYS.REQ.SERVER.PING", False),
        ("pub", "_INBOX.steal.1", False),
        ("sub", "_INBOX.>", True), ("sub", "_INBOX.abc", True),
        ("sub", "orders.created", False), ("sub", ">", False), ("sub", "platform.feed.v1", False),
    ],
}
NATS_TESTED: dict = {}


def _nats_conf_variables(text: str) -> set[str]:
    """Unquoted $NAME references (variables) in a NATS config; quoted strings are literals."""
    names = set()
    for line in text.splitlines():
        line = re.sub(r'"[^"]*"|\'[^\']*\'', "", line.split("#", 1)[0])
        names |= set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", line))
    return names


def check_nats(name: str, objs: list[dict]) -> None:
    cm = next((o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-config"), None)
    sts = next((o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats"), None)
    if not R.check(cm is not None and sts is not None, f"{name}: NATS ConfigMap and StatefulSet are rendered"):
        return
    files = cm.get("data") or {}
    R.check("nats.conf" in files and "auth.conf" in files, f"{name}: nats-config holds nats.conf and auth.conf")
    nats_conf, auth_conf = files.get("nats.conf", ""), files.get("auth.conf", "")
    R.check(re.search(r"^include\s+\"?auth\.conf\"?\s*$", nats_conf, re.M) is not None,
            f"{name}: nats.conf includes auth.conf (every client authenticates)")
    R.check(re.search(r"^\s*no_auth_user\s*[:=]", nats_conf + "\n" + auth_conf, re.M) is None,
            f"{name}: no anonymous NATS user (no_auth_user)")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container.get("env") or []}
    wanted = _nats_conf_variables(nats_conf) | _nats_conf_variables(auth_conf)
    R.check(wanted <= set(env), f"{name}: the NATS StatefulSet sets every variable its config reads",
            str(sorted(wanted - set(env))))
    for role in NATS_ROLES:
        for key in ("user", "password"):
            var = f"NATS_{role.upper()}_{key.upper()}"
            ref = ((env.get(var) or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            R.check(ref.get("name") == f"platform-nats-{role}" and ref.get("key") == key and var in wanted,
                    f"{name}: NATS reads ${var} from Secret platform-nats-{role}[{key}]", str(ref))
    # Each part connects as its role, from the same Secret the server reads.
    seen = set()
    for obj, pmeta, spec in pod_specs(objs):
        for c in spec["containers"]:
            part = part_of(c, pmeta)
            if part not in NATS_ROLE_OF_PART:
                continue
            role = NATS_ROLE_OF_PART[part]
            seen.add(part)
            cenv = {e["name"]: e for e in c.get("env") or []}
            for var, key in (("PLATFORM_NATS_USER", "user"), ("PLATFORM_NATS_PASSWORD", "password")):
                ref = ((cenv.get(var) or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
                R.check(ref.get("name") == f"platform-nats-{role}" and ref.get("key") == key,
                        f"{name}: {name_of(obj)} ({part}) gets {var} from Secret platform-nats-{role}[{key}]", str(ref))
    R.check({"control", "worker", "runtime"} <= seen, f"{name}: control, worker and runtime all authenticate to NATS",
            str(sorted(seen)))
    check_nats_server(name, nats_conf, auth_conf)


def check_nats_server(name: str, nats_conf: str, auth_conf: str) -> None:
    """The rendered config with a real nats-server: `-t` on the whole file, then the
    permission table against a server on 127.0.0.1 running auth.conf."""
    server = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if server is None:
        R.skip(f"{name}: nats-server not installed: NATS config and permissions not run (apt-get install nats-server)")
        return
    env = {**os.environ, "POD_NAME": "nats-0"}
    for role in NATS_ROLES:
        # A letter first: NATS parses a variable's value, and one starting with a digit as a number.
        env[f"NATS_{role.upper()}_USER"] = role
        env[f"NATS_{role.upper()}_PASSWORD"] = "p" + os.urandom(16).hex()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "nats.conf").write_text(nats_conf, encoding="utf-8")
        (Path(tmp) / "auth.conf").write_text(auth_conf, encoding="utf-8")
        proc = subprocess.run([server, "-c", str(Path(tmp) / "nats.conf"), "-t"], capture_output=True, text=True,
                              env=env, timeout=30)
        R.check(proc.returncode == 0, f"{name}: nats-server -t accepts the rendered nats.conf + auth.conf",
                (proc.stdout + proc.stderr)[-600:])
        key = auth_conf
        if key in NATS_TESTED:
            R.check(NATS_TESTED[key], f"{name}: NATS permissions (same auth.conf as tested above)")
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (Path(tmp) / "test.conf").write_text(f"listen: 127.0.0.1:{port}\ninclude auth.conf\n", encoding="utf-8")
        srv = subprocess.Popen([server, "-c", str(Path(tmp) / "test.conf")], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            ok = _nats_permission_table(name, port, env)
        finally:
            srv.terminate()
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srv.kill()
        NATS_TESTED[key] = ok


class _NatsClient:
    """Just enough of the NATS client protocol to see what the server allows: CONNECT, then
    SUB/PUB each followed by PING, collecting any -ERR before the PONG."""

    def __init__(self, port: int, user: str | None, password: str | None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.line()  # INFO
        opts = {"verbose": False, "pedantic": False, "protocol": 1, "name": "validate"}
        if user is not None:
            opts.update({"user": user, "pass": password})
        self.sid = 0
        self.errors_for(f"CONNECT {json.dumps(opts)}\r\n")

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def errors_for(self, command: str) -> list[str]:
        self.sock.sendall((command + "PING\r\n").encode())
        errors = []
        while True:
            line = self.line()
            if line == "PONG":
                return errors
            if line.startswith("-ERR"):
                errors.append(line)

    def allowed(self, op: str, subject: str) -> bool:
        if op == "pub":
            return not self.errors_for(f"PUB {subject} 2\r\nhi\r\n")
        self.sid += 1
        return not self.errors_for(f"SUB {subject} {self.sid}\r\n")

    def close(self) -> None:
        self.sock.close()


def _nats_permission_table(name: str, port: int, env: dict) -> bool:
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                return R.check(False, f"{name}: test nats-server starts on 127.0.0.1:{port}")
            time.sleep(0.05)
    all_ok = True
    for user, password, what in ((None, None, "without credentials"), ("control", "wrong", "with a wrong password")):
        try:
            c = _NatsClient(port, user, password)
            refused = bool(c.errors_for(""))
            c.close()
        except (ConnectionError, OSError):
            refused = True
        all_ok &= R.check(refused, f"{name}: NATS refuses a client {what}")
    for role, cases in NATS_EXPECTATIONS.items():
        try:
            c = _NatsClient(port, env[f"NATS_{role.upper()}_USER"], env[f"NATS_{role.upper()}_PASSWORD"])
        except (ConnectionError, OSError) as e:
            all_ok &= R.check(False, f"{name}: NATS accepts user {role}", str(e))
            continue
        wrong = [f"{op} {subj}: {'denied' if want else 'allowed'}, expected {'allowed' if want else 'denied'}"
                 for op, subj, want in cases if c.allowed(op, subj) != want]
        c.close()
        all_ok &= R.check(not wrong, f"{name}: NATS user {role}: {len(cases)} publish/subscribe permissions as specified",
                          "; ".join(wrong))
    return all_ok


# ---------------------------------------------------------------------------------------------
# Argo CD


def check_cluster_settings(plain: list[tuple[Path, dict]]) -> None:
    R.start("Cluster settings (deploy/cluster)")
    by_name = {(o["kind"], o["metadata"]["name"]): o for _, o in plain}
    features = by_name.get(("ConfigMap", "config-features"))
    if R.check(features is not None, "Knative config-features patch exists"):
        R.check(features["metadata"].get("namespace") == "knative-serving", "config-features targets namespace knative-serving")
        R.check(all(v in ("enabled", "disabled", "allowed") for v in (features.get("data") or {}).values()),
                "every Knative flag value is enabled, disabled or allowed")
    traefik = by_name.get(("HelmChartConfig", "traefik"))
    if R.check(traefik is not None, "K3s Traefik HelmChartConfig exists"):
        R.check(traefik["apiVersion"] == "helm.cattle.io/v1" and traefik["metadata"].get("namespace") == "kube-system",
                "HelmChartConfig is helm.cattle.io/v1 in kube-system (K3s's Helm controller)")
        values = yaml.safe_load(traefik["spec"]["valuesContent"])
        R.check(set(traefik["spec"]) == {"valuesContent"} and
                values["providers"]["kubernetesIngress"]["allowExternalNameServices"] is True,
                "Traefik may use ExternalName Services (the runtime Ingress -> Kourier)")
        # Traefik replaces client-sent X-Forwarded-* unless an entry point trusts them; the
        # runtime takes X-Forwarded-Host as the tenant's host, so nothing may be trusted.
        entry_points = values.get("ports") or {}
        trusting = [n for n, ep in entry_points.items() if isinstance(ep, dict) and
                    ((ep.get("forwardedHeaders") or {}).get("insecure") or (ep.get("forwardedHeaders") or {}).get("trustedIPs"))]
        args = " ".join(map(str, values.get("additionalArguments") or []))
        R.check(not trusting and "forwardedHeaders" not in args,
                "Traefik trusts no client's X-Forwarded-* headers (no forwardedHeaders.insecure or trustedIPs)",
                str(trusting) + args)


def check_argocd(plain: list[tuple[Path, dict]], rendered: dict) -> None:
    R.start("Argo CD Applications")
    projects = {o["metadata"]["name"]: o for _, o in plain if o["kind"] == "AppProject"}
    apps = [(f, o) for f, o in plain if o["kind"] == "Application"]
    covered = set()
    for f, app in apps:
        label = f"{rel(f)} {app['metadata']['name']}"
        spec = app["spec"]
        src = spec["source"]
        path = ROOT / src["path"]
        R.check(app["metadata"].get("namespace") == "argocd", f"{label} lives in namespace argocd")
        R.check(path.is_dir() and any((path / n).is_file() for n in KUSTOMIZATION_FILES),
                f"{label} source.path {src['path']} is a kustomization in this repository")
        R.check(spec["project"] in projects, f"{label} project {spec['project']} is defined")
        objs = rendered.get(path.resolve())
        if objs is None:
            R.check(False, f"{label} renders", "path was not rendered")
            continue
        covered.add(path.resolve())
        proj = projects.get(spec["project"], {}).get("spec", {})
        dests = {(d.get("server"), d.get("namespace")) for d in proj.get("destinations", [])}
        R.check((spec["destination"].get("server"), spec["destination"].get("namespace")) in dests,
                f"{label} destination is allowed by its project")
        cluster_kinds = {(d["group"], d["kind"]) for d in proj.get("clusterResourceWhitelist", [])}
        rendered_ns = {o["metadata"].get("namespace") for o in objs if o["metadata"].get("namespace")}
        for o in objs:
            if not o["metadata"].get("namespace"):
                R.check((group_of(o), o["kind"]) in cluster_kinds,
                        f"{label}: project allows cluster-scoped {o['kind']} {o['metadata']['name']}")
        R.check(rendered_ns <= {d[1] for d in dests}, f"{label}: project allows every namespace it renders into",
                str(rendered_ns))
        sync = spec.get("syncPolicy") or {}
        R.check(bool(sync.get("automated")), f"{label} syncs automatically")
    for o in OVERLAYS:
        R.check(o.resolve() in covered, f"overlay {rel(o)} has an Argo CD Application")


# ---------------------------------------------------------------------------------------------
# observability


def promql_metrics(expr: str) -> set[str]:
    # Grafana variables, replaced by values that keep the query valid PromQL.
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    expr = re.sub(r"\$\{?(\w+)(?::\w+)?\}?", ".*", expr)
    tree = promql_parser.parse(expr)
    names: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name or "<no metric name>")
        return True

    promql_parser.walk(tree, visit)
    return names


def check_dashboard() -> None:
    R.start("Grafana dashboard")
    f = DEPLOY / "observability" / "grafana" / "platform-dashboard.json"
    try:
        dash = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        R.check(False, f"{rel(f)} parses", str(e))
        return
    R.check(True, f"{rel(f)} parses as JSON")
    R.check(bool(dash.get("uid")) and bool(dash.get("title")), "dashboard has a uid and a title")
    panels = []
    stack = list(dash.get("panels", []))
    while stack:
        p = stack.pop(0)
        panels.append(p)
        stack.extend(p.get("panels", []))
    used: set[str] = set()
    ids = [p.get("id") for p in panels]
    R.check(len(ids) == len(set(ids)), "panel ids are unique")
    for p in panels:
        if p.get("type") == "row":
            continue
        targets = p.get("targets") or []
        R.check(bool(targets), f"panel {p.get('title')!r} has queries")
        for t in targets:
            expr = t.get("expr", "")
            try:
                names = promql_metrics(expr)
            except ValueError as e:
                R.check(False, f"panel {p.get('title')!r} query parses as PromQL", f"{expr}: {e}")
                continue
            unknown = names - METRICS
            R.check(not unknown, f"panel {p.get('title')!r}: {expr[:70]}... uses only Platform metrics",
                    f"unknown: {sorted(unknown)}")
            used |= names
    for var in (dash.get("templating") or {}).get("list", []):
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.match(r"label_values\((\w+),\s*\w+\)", q)
        if var.get("type") == "query":
            R.check(bool(m) and m.group(1) in METRICS, f"variable {var.get('name')} queries a Platform metric", q)
    for family in ("platform_requests_total", "platform_request_duration_seconds_bucket", "platform_traps_total",
                   "platform_cold_loads_total", "platform_in_flight_requests"):
        R.check(family in used, f"dashboard charts {family}")
    exprs = " ".join(t.get("expr", "") for p in panels for t in p.get("targets") or [])
    for q in ("0.5", "0.99"):
        R.check(f"histogram_quantile({q}" in exprs, f"dashboard shows p{q[2:] or '50'} from the histogram")


def check_fluent_bit() -> None:
    R.start("Fluent Bit -> Loki")
    f = DEPLOY / "observability" / "fluent-bit" / "fluent-bit.yaml"
    cfg = yaml.safe_load(f.read_text(encoding="utf-8"))
    pipeline = cfg.get("pipeline") or {}
    inputs, filters, outputs = (pipeline.get(k) or [] for k in ("inputs", "filters", "outputs"))
    tail = [i for i in inputs if i.get("name") == "tail"]
    R.check(bool(tail) and all("_platform_" in i.get("path", "") for i in tail),
            "tails the container logs of namespace platform only")
    R.check(any(i.get("multiline.parser", "").startswith("cri") for i in tail), "parses containerd (CRI) log lines")
    kube = [x for x in filters if x.get("name") == "kubernetes"]
    R.check(bool(kube) and str(kube[0].get("merge_log")).lower() in ("on", "true"),
            "kubernetes filter merges Platform's JSON log lines into fields")
    loki = [o for o in outputs if o.get("name") == "loki"]
    R.check(len(loki) == 1 and loki[0].get("host"), "ships to Loki")
    if loki:
        labels = str(loki[0].get("labels", ""))
        R.check("request_id" not in labels, "request_id is not a Loki label (unbounded cardinality)")
        R.check("namespace" in labels and "app" in labels, "Loki labels include namespace and app")
    matches = {o.get("match") for o in outputs} | {x.get("match") for x in filters}
    tags = {i.get("tag") for i in inputs}
    R.check(all(any(re.fullmatch(m.replace(".", r"\.").replace("*", ".*"), t.replace("*", "x")) for t in tags)
                for m in matches if m), "every filter/output matches an input tag")
    service = cfg.get("service") or {}
    R.check(str(service.get("health_check")).lower() in ("on", "true"), "health endpoint on (liveness probe)")


def check_scrape_config() -> None:
    R.start("VictoriaMetrics scrape config")
    f = DEPLOY / "observability" / "vmagent" / "scrape.yaml"
    jobs = yaml.safe_load(f.read_text(encoding="utf-8"))
    # The operator's additionalScrapeConfigs format: a plain list of scrape configs.
    if not R.check(isinstance(jobs, list) and len(jobs) >= 1, "is a list of scrape configs"):
        return
    for job in jobs:
        label = f"job {job.get('job_name')}"
        sd = job.get("kubernetes_sd_configs") or []
        R.check(bool(sd) and all(s.get("role") == "pod" and s.get("namespaces", {}).get("names") == ["platform"] for s in sd),
                f"{label} discovers pods in namespace platform")
        relabels = job.get("relabel_configs") or []
        keeps = " ".join(r.get("regex", "") for r in relabels if r.get("action") == "keep")
        R.check(all(p in keeps for p in PARTS), f"{label} keeps runtime, control and worker pods")
        addr = [r for r in relabels if r.get("target_label") == "__address__"]
        R.check(bool(addr) and addr[0].get("replacement", "").endswith(":8081"), f"{label} scrapes the admin port 8081")
        R.check(job.get("metrics_path", "/metrics") == "/metrics", f"{label} scrapes /metrics")
        for r in relabels:
            try:
                re.compile(r.get("regex", "(.*)"))
            except re.error as e:
                R.check(False, f"{label} regex {r.get('regex')!r}", str(e))
    tool = next((t for t in ("vmagent", "victoria-metrics", "promtool") if shutil.which(t)), None)
    if tool is None:
        R.skip("vmagent / victoria-metrics / promtool not installed: scrape config not checked by a real parser")
        return
    with tempfile.TemporaryDirectory() as tmp:
        wrapped = Path(tmp) / "scrape.yml"
        wrapped.write_text(yaml.safe_dump({"scrape_configs": jobs}), encoding="utf-8")
        if tool == "promtool":
            cmd = [tool, "check", "config", "--syntax-only", str(wrapped)]
        else:
            cmd = [tool, f"-promscrape.config={wrapped}", "-dryRun"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp)
    R.check(proc.returncode == 0, f"{tool} accepts the scrape config", (proc.stdout + proc.stderr)[-800:])


# ---------------------------------------------------------------------------------------------
# Terraform and Packer


def hcl_load(path: Path):
    with path.open(encoding="utf-8") as f:
        return hcl2.load(f)


def _strip(s):
    return s.strip('"') if isinstance(s, str) else s


# What each Terraform module must declare, and its providers (name -> registry source).
TERRAFORM_MODULES = {
    "hetzner": {
        "providers": {"hcloud": "hetznercloud/hcloud", "tailscale": "tailscale/tailscale", "random": "hashicorp/random"},
        "resources": ["hcloud_network", "hcloud_network_subnet", "hcloud_firewall", "hcloud_server", "hcloud_ssh_key",
                      "hcloud_placement_group", "tailscale_tailnet_key", "random_password"],
    },
    "digitalocean": {
        "providers": {"digitalocean": "digitalocean/digitalocean", "tailscale": "tailscale/tailscale",
                      "random": "hashicorp/random"},
        "resources": ["digitalocean_vpc", "digitalocean_tag", "digitalocean_firewall", "digitalocean_droplet",
                      "digitalocean_ssh_key", "digitalocean_spaces_bucket", "digitalocean_spaces_key",
                      "tailscale_tailnet_key", "random_password"],
    },
}
# Ports never open to the internet: SSH, the Kubernetes API, kubelet, etcd.
PRIVATE_PORTS = (22, 6443, 10250, 2379, 2380)
PUBLIC_SOURCES = ("0.0.0.0/0", "::/0")


def _port_range(text: str) -> tuple[int, int] | None:
    text = str(_strip(text or "")).strip()
    if not text:
        return None
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def _check_public_rule(module: str, protocol: str, ports: str, sources, what: str) -> None:
    public = any(src in str(sources) for src in PUBLIC_SOURCES)
    ports = str(_strip(ports or ""))
    rng = _port_range(ports)
    if not public:
        return
    exposed = [p for p in PRIVATE_PORTS if rng and rng[0] <= p <= rng[1] and protocol == "tcp"]
    R.check(not exposed, f"{module}: firewall rule {protocol}/{ports or '-'} ({what}) is public but opens none of "
            f"{PRIVATE_PORTS}", f"opens {exposed}")
    allowed = {("tcp", (80, 80)), ("tcp", (443, 443)), ("udp", (41641, 41641)), ("icmp", None)}
    R.check((protocol, rng) in allowed, f"{module}: public firewall rule {protocol}/{ports or '-'} is HTTP(S), Tailscale or ICMP")


def check_terraform() -> None:
    for module, spec in TERRAFORM_MODULES.items():
        check_terraform_module(module, spec)
    tf = shutil.which("terraform")
    R.start("Terraform (terraform fmt)")
    if tf:
        env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
        proc = subprocess.run([tf, "fmt", "-check", "-recursive", "-diff", str(DEPLOY / "terraform")],
                              capture_output=True, text=True, env=env)
        R.check(proc.returncode == 0, "terraform fmt -check (offline)", proc.stdout[-1500:] + proc.stderr[-500:])
        R.skip("terraform validate: needs `terraform init` to download providers (no registry access here)")
    else:
        R.skip("terraform binary not installed: terraform fmt not run")


def check_terraform_module(module: str, spec: dict) -> None:
    R.start(f"Terraform (deploy/terraform/{module})")
    tf_dir = DEPLOY / "terraform" / module
    resources: dict = defaultdict(dict)
    variables, providers, texts = set(), {}, ""
    for f in sorted(tf_dir.glob("*.tf")):
        try:
            doc = hcl_load(f)
        except Exception as e:  # python-hcl2 raises lark errors of several types
            R.check(False, f"{rel(f)} parses (python-hcl2)", str(e)[:500])
            continue
        R.check(True, f"{rel(f)} parses (python-hcl2)")
        texts += f.read_text(encoding="utf-8")
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for rname, body in named.items():
                    resources[_strip(rtype)][_strip(rname)] = body
        for block in doc.get("variable", []):
            variables |= {_strip(k) for k in block}
        for block in doc.get("terraform", []):
            for rp in block.get("required_providers", []):
                providers.update({_strip(k): v for k, v in rp.items()})
    for p, source in spec["providers"].items():
        version = _strip((providers.get(p) or {}).get("version", ""))
        R.check(_strip((providers.get(p) or {}).get("source")) == source and str(version).startswith("~>"),
                f"{module}: provider {p} is {source}, version-pinned ({version})", str(providers.get(p)))
    for rtype in spec["resources"]:
        R.check(rtype in resources, f"{module}: declares {rtype}")
    used = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", texts))
    R.check(used <= variables, f"{module}: every var.* used is declared", str(sorted(used - variables)))
    example = tf_dir / "terraform.tfvars.example"
    if R.check(example.is_file(), f"{module}: has terraform.tfvars.example"):
        try:
            with example.open(encoding="utf-8") as f:
                keys = {k for k in hcl2.load(f) if not k.startswith("__")}
            R.check(keys <= variables, f"{module}: terraform.tfvars.example sets only declared variables",
                    str(sorted(keys - variables)))
        except Exception as e:
            R.check(False, f"{module}: terraform.tfvars.example parses", str(e)[:300])
    ignored = (tf_dir / ".gitignore").read_text(encoding="utf-8").split() if (tf_dir / ".gitignore").is_file() else []
    R.check({"terraform.tfvars", "*.tfstate", ".terraform/"} <= set(ignored),
            f"{module}: .gitignore keeps state, tfvars and .terraform/ out of git")
    if module == "hetzner":
        for fw in resources.get("hcloud_firewall", {}).values():
            for rule in fw.get("rule", []):
                _check_public_rule(module, _strip(rule.get("protocol")), rule.get("port", ""), rule.get("source_ips", []),
                                   _strip(rule.get("description", "")))
        for sname, srv in resources.get("hcloud_server", {}).items():
            text = json.dumps(srv)
            R.check("hcloud_firewall" in text, f"{module}: server {sname} is behind the firewall")
            R.check("hcloud_network" in text, f"{module}: server {sname} joins the private network")
            R.check("templatefile" in text and "tailscale" in text, f"{module}: server {sname} joins the tailnet from cloud-init")
    if module == "digitalocean":
        fws = resources.get("digitalocean_firewall", {})
        for fw in fws.values():
            inbound, outbound = fw.get("inbound_rule", []), fw.get("outbound_rule", [])
            for rule in inbound:
                _check_public_rule(module, _strip(rule.get("protocol")), rule.get("port_range", ""),
                                   rule.get("source_addresses", []), "inbound")
            internal = [r for r in inbound if "var.vpc_cidr" in json.dumps(r.get("source_addresses"))]
            R.check({_strip(r.get("protocol")) for r in internal} == {"tcp", "udp", "icmp"},
                    f"{module}: nodes reach each other inside the VPC (tcp, udp, icmp from var.vpc_cidr)")
            R.check({_strip(r.get("protocol")) for r in outbound} == {"tcp", "udp", "icmp"}
                    and all(any(src in str(r.get("destination_addresses")) for src in PUBLIC_SOURCES) for r in outbound),
                    f"{module}: outbound rules allow tcp, udp and icmp (a DigitalOcean firewall denies what no rule allows)")
            R.check("digitalocean_tag.k3s" in json.dumps(fw.get("tags")), f"{module}: the firewall applies to the cluster's tag")
        for sname, drop in resources.get("digitalocean_droplet", {}).items():
            text = json.dumps(drop)
            R.check("digitalocean_tag.k3s" in json.dumps(drop.get("tags")), f"{module}: droplet {sname} carries the firewall's tag")
            R.check("digitalocean_vpc.k3s" in json.dumps(drop.get("vpc_uuid")), f"{module}: droplet {sname} is in the VPC")
            R.check("templatefile" in text and "tailscale" in text, f"{module}: droplet {sname} joins the tailnet from cloud-init")
            R.check("ignore_changes" in text, f"{module}: droplet {sname} is not replaced when cloud-init or the image changes")
        for bname, bucket in resources.get("digitalocean_spaces_bucket", {}).items():
            R.check(_strip(bucket.get("acl", "private")) == "private", f"{module}: Spaces bucket {bname} is private")
        for kname, key in resources.get("digitalocean_spaces_key", {}).items():
            grants = key.get("grant", [])
            R.check(bool(grants) and all(_strip(g.get("permission")) == "readwrite" and "digitalocean_spaces_bucket" in json.dumps(g)
                                         for g in grants),
                    f"{module}: Spaces key {kname} can read and write the bucket only (no fullaccess)")
    # Cloud-init templates: every ${...} is passed in, and the rendered result is YAML.
    for call in re.finditer(r'templatefile\(\s*"\$\{path\.module\}/([^"]+)"\s*,\s*\{(.*?)\}\s*\)', texts, re.S):
        template = tf_dir / call.group(1)
        where = f"{module}: {call.group(1)}"
        passed = set(re.findall(r"^\s*(\w+)\s*=", call.group(2), re.M))
        if not R.check(template.is_file(), f"{where} exists"):
            continue
        body = template.read_text(encoding="utf-8")
        R.check("%{" not in body, f"{where} uses only ${{...}} interpolation")
        wanted = set(re.findall(r"(?<!\$)\$\{(\w+)\}", body))
        R.check(wanted <= passed, f"{where}: every interpolated name is passed by templatefile()",
                str(sorted(wanted - passed)))
        # Values: files embedded with indent(N, file(...)) as Terraform would; others a token.
        values = {}
        for name, width, path in re.findall(
                r'^\s*(\w+)\s*=\s*indent\((\d+),\s*file\("\$\{path\.module\}/([^"]+)"\)\)', call.group(2), re.M):
            content = (tf_dir / path).read_text(encoding="utf-8")
            values[name] = (content, content.replace("\n", "\n" + " " * int(width)))
        rendered = re.sub(r"(?<!\$)\$\{(\w+)\}",
                          lambda m: values[m.group(1)][1] if m.group(1) in values else f"x-{m.group(1)}",
                          body).replace("$${", "${")
        try:
            doc = yaml.safe_load(rendered)
            ok = body.startswith("#cloud-config") and isinstance(doc, dict) and "runcmd" in doc
            R.check(ok, f"{where} renders to #cloud-config YAML with runcmd")
        except yaml.YAMLError as e:
            R.check(False, f"{where} renders to YAML", str(e)[:300])
            continue
        for name, (content, _) in values.items():
            files = [f for f in doc.get("write_files", []) if f"${{{name}}}" in body and
                     str(f.get("content", "")).strip() == content.strip()]
            R.check(bool(files), f"{where}: the embedded {name} comes out of cloud-init unchanged")
        for f in doc.get("write_files", []):
            if str(f.get("content", "")).startswith("#!/bin/bash"):
                with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
                    script.write(f["content"])
                sc = shutil.which("shellcheck")
                if sc:
                    proc = subprocess.run([sc, "-S", "warning", script.name], capture_output=True, text=True)
                    R.check(proc.returncode == 0, f"{where}: {f['path']} passes shellcheck", proc.stdout[-800:])
                os.unlink(script.name)


def check_spaces_overlay(rendered: dict) -> None:
    """The digitalocean overlay's blob settings match what its Terraform module creates."""
    objs = rendered.get((DEPLOY / "overlays" / "digitalocean").resolve())
    if objs is None:
        return
    R.start("DigitalOcean overlay against deploy/terraform/digitalocean")
    defaults = {}
    with (DEPLOY / "terraform" / "digitalocean" / "variables.tf").open(encoding="utf-8") as f:
        for block in hcl2.load(f).get("variable", []):
            for k, v in block.items():
                defaults[_strip(k)] = _strip(v.get("default"))
    cfg = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "platform-config")["data"]
    bucket = urlparse(cfg.get("PLATFORM_BLOB_URL", "")).hostname
    R.check(bucket == defaults.get("spaces_bucket"), f"PLATFORM_BLOB_URL names the bucket Terraform creates ({bucket})")
    R.check(cfg.get("AWS_REGION") == defaults.get("region"), f"AWS_REGION is the module's region ({cfg.get('AWS_REGION')})")
    R.check(cfg.get("AWS_ENDPOINT") == f"https://{defaults.get('region')}.digitaloceanspaces.com",
            f"AWS_ENDPOINT is the Spaces endpoint of that region ({cfg.get('AWS_ENDPOINT')})")


def check_packer() -> None:
    R.start("Packer (deploy/packer)")
    pdir = DEPLOY / "packer"
    files = sorted(pdir.glob("*.pkr.hcl"))
    R.check(bool(files), "has a *.pkr.hcl template")
    for f in files:
        try:
            doc = hcl_load(f)
        except Exception as e:
            R.check(False, f"{rel(f)} parses (python-hcl2)", str(e)[:500])
            continue
        R.check(True, f"{rel(f)} parses (python-hcl2)")
        plugins = {}
        for block in doc.get("packer", []):
            for rp in block.get("required_plugins", []):
                plugins.update({_strip(k): v for k, v in rp.items()})
        R.check(_strip((plugins.get("hcloud") or {}).get("source")) == "github.com/hetznercloud/hcloud",
                "requires the hcloud plugin", str(plugins))
        sources = {(_strip(t), _strip(n)) for s in doc.get("source", []) for t, v in s.items() for n in v}
        R.check(any(t == "hcloud" for t, _ in sources), "has an hcloud source", str(sources))
        text = f.read_text(encoding="utf-8")
        for src in doc.get("source", []):
            for body in (src.get("hcloud") or {}).values():
                R.check("ubuntu" in str(body.get("image")), "builds from an Ubuntu base image")
                R.check("snapshot_labels" in body, "labels the snapshot (Terraform selects it by label)")
        R.check(bool(doc.get("build")), "has a build block")
        scripts = re.findall(r'"\$\{path\.root\}/(scripts/[^"]+)"', text)
        R.check(bool(scripts), "runs provisioning scripts")
        for s in scripts:
            R.check((pdir / s).is_file(), f"script {s} exists")
        for needed in ("k3s", "tailscale"):
            R.check(any(needed in s for s in scripts), f"installs {needed}")
    packer = shutil.which("packer")
    if packer:
        proc = subprocess.run([packer, "validate", "-syntax-only", str(pdir)], capture_output=True, text=True)
        R.check(proc.returncode == 0, "packer validate -syntax-only", proc.stdout[-800:] + proc.stderr[-400:])
    else:
        R.skip("packer binary not installed: `packer validate` not run")


def check_shell() -> None:
    R.start("Shell scripts (shellcheck)")
    scripts = sorted((DEPLOY / "packer" / "scripts").glob("*.sh")) + [DEPLOY / "tests" / "validate"] + \
        sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file() and p.read_text(encoding="utf-8").startswith("#!"))
    sc = shutil.which("shellcheck")
    if not sc:
        R.skip("shellcheck not installed")
        return
    for s in scripts:
        # -x from the repository root: scripts/test and scripts/bench source scripts/bootstrap.
        proc = subprocess.run([sc, "-x", "-S", "style", str(s)], capture_output=True, text=True, cwd=ROOT)
        R.check(proc.returncode == 0, f"shellcheck {rel(s)}", proc.stdout[-1500:])


# ---------------------------------------------------------------------------------------------
# Dockerfile and README


def check_dockerfile() -> None:
    R.start("Dockerfile and .dockerignore")
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    R.check(len(froms) >= 3, "multi-stage build", str(froms))
    R.check("cargo chef cook" in text and "--recipe-path" in text, "caches dependencies in their own layer (cargo-chef)")
    R.check(re.search(r"cargo install cargo-chef --locked --version", text) is not None, "cargo-chef is pinned")
    build = [l for l in lines if "cargo build" in l]
    R.check(bool(build) and all("--locked" in l and "--release" in l for l in build), "release build with --locked")
    R.check(re.search(r"--package platform\b|-p platform\b", text) is not None, "builds the `platform` package")
    R.check("bookworm" in text and "distroless/cc-debian12" in text, "builder glibc (Debian 12) matches the runtime image")
    R.check(re.search(r"ARG RUNTIME_IMAGE=gcr\.io/distroless/cc-debian12:nonroot", text) is not None,
            "final image is distroless (no shell), nonroot variant")
    R.check(froms[-1].split()[1] == "${RUNTIME_IMAGE}", "the last stage is the runtime image")
    users = [l for l in lines if l.upper().startswith("USER ")]
    R.check(bool(users) and users[-1].split()[1].split(":")[0] == "65532", "runs as uid 65532")
    R.check('ENTRYPOINT ["/platform"]' in lines, 'ENTRYPOINT ["/platform"]')
    R.check(not any(l.upper().startswith(("RUN ", "SHELL ")) for l in lines[lines.index(froms[-1]):]),
            "nothing runs in the final stage (it has no shell)")
    ignore = [l.strip() for l in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    for entry in ("target/", ".git/", "**/node_modules/", ".platform/"):
        R.check(entry in ignore, f".dockerignore excludes {entry}")
    for keep in ("Cargo.lock", "Cargo.toml", "src", "runtime", "tests"):
        R.check(not any(l.rstrip("/") == keep for l in ignore), f".dockerignore keeps {keep}")


def check_readme() -> None:
    R.start("Runbook (deploy/README.md)")
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for needle in ("docker build", "packer build", "terraform apply", "knative-features.yaml", "kourier",
                   "cloudnative-pg", "sealed-secrets", "kyverno", "argocd", "kubeseal", "admin-token",
                   "platform login", "platform deploy hello.wasm --app hello --route /hello", "curl",
                   "deploy/tests/validate", "What was validated"):
        R.check(needle.lower() in text.lower(), f"mentions {needle!r}")
    for link in re.findall(r"\]\((?!https?://|#)([^)]+)\)", text):
        R.check((DEPLOY / link).exists(), f"link {link} exists")


# ---------------------------------------------------------------------------------------------


def main() -> int:
    started = time.time()
    crds = load_crd_schemas()
    R.start("Schemas")
    if crds:
        R.check(True, f"{len(crds)} CRD schema versions loaded from {SCHEMAS}")
    else:
        R.note(f"{SCHEMAS} not found: CRD schema checks (Knative, CNPG, Argo CD, Kyverno, SealedSecret) are SKIPPED")

    yamllint_all()

    features_doc = yaml.safe_load((DEPLOY / "cluster" / "knative-features.yaml").read_text(encoding="utf-8"))
    features = features_doc.get("data") or {}

    rendered: dict = {}
    kubectl = check_kubectl()
    for directory in (OVERLAYS + EXTRA_KUSTOMIZATIONS) if kubectl else []:
        R.start(f"Render {rel(directory)}")
        objs = render(kubectl, directory)
        if objs is None:
            continue
        rendered[directory.resolve()] = objs
        R.start(f"Schemas of {rel(directory)}")
        for o in objs:
            validate_object(o, crds, rel(directory))
        if directory in OVERLAYS:
            R.start(f"Consistency of {rel(directory)}")
            check_overlay(directory.name, objs, features)
            R.start(f"Kyverno policy against {rel(directory)}")
            check_policies(directory.name, objs)
            R.start(f"NetworkPolicies of {rel(directory)}")
            check_network_policies(directory.name, objs)
            R.start(f"NATS users and permissions of {rel(directory)}")
            check_nats(directory.name, objs)
            check_kubearmor(directory.name, objs)

    check_generated(crds, features, rendered)

    R.start("Plain manifests (argocd/, cluster/)")
    plain = []
    for f in PLAIN_MANIFESTS:
        for o in load_yaml_documents(f):
            plain.append((f, o))
            validate_object(o, crds, rel(f))
    check_cluster_settings(plain)
    check_argocd(plain, rendered)
    check_dashboard()
    check_fluent_bit()
    check_scrape_config()
    check_terraform()
    check_spaces_overlay(rendered)
    check_packer()
    check_shell()
    check_dockerfile()
    check_readme()

    print("\n== Summary")
    for section, n in R.section_counts.items():
        print(f"  {n:4d} checks  {section}")
    for s in R.skipped:
        print(f"  skipped: {s}")
    for n in R.notes:
        print(f"  note: {n}")
    for f in R.failed:
        print(f"  FAILED: {f}")
    print(f"\nvalidated in {time.time() - started:.1f}s")
    print(f"{R.passed} passed, {len(R.failed)} failed, {len(R.skipped)} skipped")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
