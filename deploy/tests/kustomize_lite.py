"""A small kustomize renderer for exactly the features deploy/ uses.

No kustomize binary can be downloaded here, and no maintained offline renderer exists on PyPI
for this Python, so this module renders deploy/'s kustomizations itself. It is deliberately
narrow: anything outside the list below is an error naming the unsupported field, never a
silent difference. When a real kustomize (`kubectl kustomize`) is installed, validate.py
renders with both and fails if they disagree, so this code is checked against the real thing.

Supported (kustomize v5 semantics):
  Kustomization and Component files (kustomization.yaml | .yml | Kustomization)
  resources         files (multi-document YAML) and directories holding a kustomization
  components        directories holding a kind: Component kustomization
  namespace         sets metadata.namespace on namespaced objects, renames Namespace objects,
                    and moves ServiceAccount subjects of (Cluster)RoleBindings whose
                    namespace is unset or `default`, like kustomize's namespace transformer
  labels            `pairs` added to metadata.labels; includeSelectors / includeTemplates
                    must be false (the default)
  images            name -> newName / newTag / digest in every `containers` and
                    `initContainers` list anywhere in an object (kustomize's legacy walk)
  patches           `path` or inline `patch`; strategic merge (a YAML mapping, target
                    optional) or JSON 6902 (a YAML list of add/replace/remove, target required);
                    target by group, version, kind, name (anchored regex), namespace,
                    labelSelector (k=v[,k=v])
  configMapGenerator / secretGenerator with `files` and `literals`, only with
                    disableNameSuffixHash: true (kustomize's hash is not reimplemented)
  generatorOptions  disableNameSuffixHash, labels, annotations

Order per kustomization, as kustomize does it: resources, components, generators, then
patches, namespace, labels, images.

Strategic merge: maps merge recursively; `null` deletes a key; lists of built-in Kubernetes
kinds merge on the Kubernetes patch merge keys below; every other list (and every list of a
custom resource, for which kustomize has no schema) is replaced whole. `$patch` directives
are not supported.
"""

from __future__ import annotations

import base64
import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

SUPPORTED_FIELDS = {
    "apiVersion", "kind", "resources", "components", "namespace", "labels", "images",
    "patches", "configMapGenerator", "secretGenerator", "generatorOptions",
}

# Kinds kustomize treats as cluster-scoped (from its built-in schema). Custom resources are
# always treated as namespaced by kustomize, whatever their CRD says.
CLUSTER_SCOPED_KINDS = {
    "APIService", "CertificateSigningRequest", "ClusterRole", "ClusterRoleBinding",
    "ComponentStatus", "CSIDriver", "CSINode", "CustomResourceDefinition", "FlowSchema",
    "IngressClass", "MutatingWebhookConfiguration", "Namespace", "Node", "PersistentVolume",
    "PriorityClass", "PriorityLevelConfiguration", "RuntimeClass", "StorageClass",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration", "VolumeAttachment",
}

# Strategic-merge keys of the built-in API (x-kubernetes-patch-merge-key), by list field name.
# `ports` depends on the parent: container ports merge on containerPort, Service ports on port.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}


class KustomizeError(Exception):
    """A kustomization uses something this renderer does not support, or is wrong."""


def _api_group(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def is_builtin(obj: dict) -> bool:
    group, _ = _api_group(obj.get("apiVersion", ""))
    return "." not in group or group.endswith(".k8s.io")


def res_id(obj: dict) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    group, _ = _api_group(obj.get("apiVersion", ""))
    return (group, obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))


def load_yaml_documents(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise KustomizeError(f"{path}: every document must be a Kubernetes object")
    return docs


def _within(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        p = directory / name
        if p.is_file():
            return p
    raise KustomizeError(f"{directory}: no kustomization file")


# ---------------------------------------------------------------------------------------------
# strategic merge patch


def _merge_list(base: list, patch: list, key: str | None, builtin: bool) -> list:
    if not builtin or key is None:
        return copy.deepcopy(patch)
    if not all(isinstance(x, dict) and key in x for x in base + patch):
        return copy.deepcopy(patch)
    # kustomize (kyaml) order: the patch's elements first, in patch order, each merged with
    # the element of the same key if there is one; then the untouched elements of `base`.
    originals = {x[key]: x for x in base}
    out = [_merge_map(originals[item[key]], item, builtin, parent=None) if item[key] in originals
           else copy.deepcopy(item) for item in patch]
    patched = {item[key] for item in patch}
    out.extend(copy.deepcopy(x) for x in base if x[key] not in patched)
    return out


def _merge_map(base: dict, patch: dict, builtin: bool, parent: str | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(k, str) and k.startswith("$"):
            raise KustomizeError(f"strategic merge directive {k!r} is not supported")
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_map(out[k], v, builtin, parent=k)
        elif isinstance(v, list) and isinstance(out.get(k), list):
            if k == "ports":
                key = "containerPort" if any("containerPort" in p for p in v + out[k]) else "port"
            else:
                key = MERGE_KEYS.get(k)
            out[k] = _merge_list(out[k], v, key, builtin)
        else:
            out[k] = copy.deepcopy(v)
    return out


def strategic_merge(obj: dict, patch: dict) -> dict:
    return _merge_map(obj, patch, is_builtin(obj), parent=None)


# ---------------------------------------------------------------------------------------------
# JSON 6902


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json6902(obj: dict, ops: list) -> dict:
    out = copy.deepcopy(obj)
    for op in ops:
        kind = op.get("op")
        if kind not in ("add", "replace", "remove"):
            raise KustomizeError(f"JSON 6902 op {kind!r} is not supported")
        parts = _pointer(op["path"])
        parent: Any = out
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if isinstance(parent, list):
            if kind == "add":
                idx = len(parent) if last == "-" else int(last)
                parent.insert(idx, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[int(last)] = copy.deepcopy(op["value"])
            else:
                del parent[int(last)]
        else:
            if kind == "replace" and last not in parent:
                raise KustomizeError(f"JSON 6902 replace: {op['path']} does not exist")
            if kind == "remove":
                if last not in parent:
                    raise KustomizeError(f"JSON 6902 remove: {op['path']} does not exist")
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op["value"])
    return out


# ---------------------------------------------------------------------------------------------
# transformers


def _matches_target(obj: dict, target: dict) -> bool:
    allowed = {"group", "version", "kind", "name", "namespace", "labelSelector"}
    unknown = set(target) - allowed
    if unknown:
        raise KustomizeError(f"patch target fields not supported: {sorted(unknown)}")
    group, version = _api_group(obj.get("apiVersion", ""))
    meta = obj.get("metadata") or {}
    if "group" in target and target["group"] != group:
        return False
    if "version" in target and target["version"] != version:
        return False
    if "kind" in target and target["kind"] != obj.get("kind"):
        return False
    if "name" in target and not re.fullmatch(target["name"], meta.get("name", "")):
        return False
    if "namespace" in target and not re.fullmatch(target["namespace"], meta.get("namespace", "")):
        return False
    if "labelSelector" in target:
        labels = meta.get("labels") or {}
        for term in target["labelSelector"].split(","):
            k, _, v = term.partition("=")
            if labels.get(k.strip()) != v.strip():
                return False
    return True


def apply_patches(resources: list[dict], patches: list, root: Path) -> list[dict]:
    for entry in patches:
        unknown = set(entry) - {"path", "patch", "target"}
        if unknown:
            raise KustomizeError(f"{root}: patch fields not supported: {sorted(unknown)}")
        if "path" in entry:
            file = root / entry["path"]
            if not _within(root, file):
                raise KustomizeError(f"{root}: patch {entry['path']} is outside the kustomization")
            text = file.read_text(encoding="utf-8")
        else:
            text = entry["patch"]
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        if len(docs) != 1:
            raise KustomizeError(f"{root}: a patch must hold exactly one document")
        body = docs[0]
        target = entry.get("target")
        applied = 0
        if isinstance(body, list):
            if target is None:
                raise KustomizeError(f"{root}: a JSON 6902 patch needs a target")
            for i, obj in enumerate(resources):
                if _matches_target(obj, target):
                    resources[i] = json6902(obj, body)
                    applied += 1
        elif isinstance(body, dict):
            if target is None:
                group, version = _api_group(body.get("apiVersion", ""))
                target = {"kind": body["kind"], "name": re.escape(body["metadata"]["name"])}
                if group:
                    target["group"] = group
            for i, obj in enumerate(resources):
                if _matches_target(obj, target):
                    resources[i] = strategic_merge(obj, body)
                    applied += 1
        else:
            raise KustomizeError(f"{root}: a patch must be a mapping or a list")
        if applied == 0:
            # kustomize fails on a strategic merge patch that matches nothing; a patch that
            # does nothing is a mistake for JSON 6902 as well, so fail on both.
            raise KustomizeError(f"{root}: patch {entry.get('path', target)} matched no resource")
    return resources


def set_namespace(resources: list[dict], namespace: str) -> None:
    for obj in resources:
        meta = obj.setdefault("metadata", {})
        kind = obj.get("kind")
        if kind == "Namespace":
            meta["name"] = namespace
        elif kind not in CLUSTER_SCOPED_KINDS:
            meta["namespace"] = namespace
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and subject.get("namespace", "default") == "default":
                    subject["namespace"] = namespace


def add_labels(resources: list[dict], entries: list, root: Path) -> None:
    for entry in entries:
        unknown = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
        if unknown or entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise KustomizeError(f"{root}: only `labels: - pairs:` with selectors/templates off is supported")
        for obj in resources:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])


def _split_image(image: str) -> tuple[str, str, str]:
    """Returns (name, tag, digest) of an image reference."""
    name, digest = image, ""
    if "@" in name:
        name, digest = name.split("@", 1)
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def _rewrite_image(image: str, rules: list) -> str:
    name, tag, digest = _split_image(image)
    for rule in rules:
        if rule["name"] != name:
            continue
        new_name = rule.get("newName", name)
        if "digest" in rule:
            return f"{new_name}@{rule['digest']}"
        if "newTag" in rule:
            return f"{new_name}:{rule['newTag']}"
        return new_name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return image


def set_images(node: Any, rules: list) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("containers", "initContainers") and isinstance(v, list):
                for c in v:
                    if isinstance(c, dict) and isinstance(c.get("image"), str):
                        c["image"] = _rewrite_image(c["image"], rules)
            set_images(v, rules)
    elif isinstance(node, list):
        for item in node:
            set_images(item, rules)


# ---------------------------------------------------------------------------------------------
# generators


def _generate(root: Path, kind: str, spec: dict, options: dict) -> dict:
    unknown = set(spec) - {"name", "files", "literals", "options", "type"}
    if unknown:
        raise KustomizeError(f"{root}: {kind} generator fields not supported: {sorted(unknown)}")
    opts = {**options, **(spec.get("options") or {})}
    if not opts.get("disableNameSuffixHash"):
        raise KustomizeError(f"{root}: generators need disableNameSuffixHash: true here")
    data: dict[str, str] = {}
    for item in spec.get("files") or []:
        key, _, rel = item.partition("=") if "=" in item else (Path(item).name, "", item)
        file = root / rel
        if not _within(root, file):
            raise KustomizeError(f"{root}: generator file {rel} is outside the kustomization")
        data[key] = file.read_text(encoding="utf-8")
    for item in spec.get("literals") or []:
        key, _, value = item.partition("=")
        data[key] = value
    meta: dict[str, Any] = {"name": spec["name"]}
    if opts.get("labels"):
        meta["labels"] = dict(opts["labels"])
    if opts.get("annotations"):
        meta["annotations"] = dict(opts["annotations"])
    if kind == "ConfigMap":
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta,
            "type": spec.get("type", "Opaque"), "data": encoded}


# ---------------------------------------------------------------------------------------------
# build


def _load_kustomization(directory: Path, expect_kind: str) -> dict:
    file = _kustomization_file(directory)
    k = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{file}: fields not supported by kustomize_lite: {sorted(unknown)}")
    if k.get("kind", "Kustomization") != expect_kind:
        raise KustomizeError(f"{file}: expected kind {expect_kind}, found {k.get('kind')}")
    return k


def _accumulate(directory: Path, k: dict, resources: list[dict]) -> list[dict]:
    for entry in k.get("resources") or []:
        target = directory / entry
        if "://" in entry or entry.startswith("github.com/"):
            raise KustomizeError(f"{directory}: remote resource {entry} is not supported")
        if target.is_dir():
            resources.extend(build(target))
        elif target.is_file():
            if not _within(directory, target):
                raise KustomizeError(f"{directory}: file {entry} is outside the kustomization")
            resources.extend(load_yaml_documents(target))
        else:
            raise KustomizeError(f"{directory}: resource {entry} does not exist")
    for entry in k.get("components") or []:
        comp_dir = directory / entry
        comp = _load_kustomization(comp_dir, "Component")
        resources = _transform(comp_dir, comp, _accumulate(comp_dir, comp, resources))
    options = k.get("generatorOptions") or {}
    for spec in k.get("configMapGenerator") or []:
        resources.append(_generate(directory, "ConfigMap", spec, options))
    for spec in k.get("secretGenerator") or []:
        resources.append(_generate(directory, "Secret", spec, options))
    return resources


def _transform(directory: Path, k: dict, resources: list[dict]) -> list[dict]:
    resources = apply_patches(resources, k.get("patches") or [], directory)
    if k.get("namespace"):
        set_namespace(resources, k["namespace"])
    if k.get("labels"):
        add_labels(resources, k["labels"], directory)
    if k.get("images"):
        set_images(resources, k["images"])
    return resources


def build(directory: str | os.PathLike) -> list[dict]:
    """Renders the kustomization in `directory` to a list of objects."""
    directory = Path(directory)
    k = _load_kustomization(directory, "Kustomization")
    resources = _transform(directory, k, _accumulate(directory, k, []))
    seen: set = set()
    for obj in resources:
        rid = res_id(obj)
        if rid in seen:
            raise KustomizeError(f"{directory}: duplicate object {rid}")
        seen.add(rid)
    return resources
