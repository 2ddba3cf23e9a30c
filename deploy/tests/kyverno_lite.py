"""Evaluates Kyverno `validate.pattern` / `validate.anyPattern` rules offline.

A re-implementation of the part of Kyverno's pattern engine that deploy/'s policies use,
following kyverno/kyverno pkg/engine/validate/validate.go, pkg/engine/anchor and
pkg/engine/pattern (v1.19):

  maps          every plain key must exist in the resource and match
  =(key)        equality anchor: if the key exists, its value must match
  X(key)        negation anchor: the key must not exist
  lists         a pattern list of one mapping: every resource element must match it;
                a pattern list of scalars: every resource element must match the first one
  scalars       bool / int / float compare by value; strings support `a | b` (any of),
                `*` / `?` wildcards and a leading `!` (not); the pattern "*" only needs the
                key to be present

Anything else in a policy (conditional, global or existence anchors, preconditions, deny,
foreach, CEL, podSecurity, variables) makes evaluation fail loudly rather than guess.

Auto-gen: a rule matching only Pod is applied by Kyverno to pod controllers too, with the
pattern moved under the pod template; `evaluate` does the same for Deployment, StatefulSet,
DaemonSet, ReplicaSet, Job (spec.template) and CronJob (spec.jobTemplate.spec.template).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

ANCHOR = re.compile(r"^(?P<mod>[+<=X^])?\((?P<key>.+)\)$")

POD_CONTROLLERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}


class UnsupportedPolicy(Exception):
    """The policy uses a Kyverno feature this evaluator does not implement."""


@dataclass
class Result:
    rule: str
    passed: bool
    message: str


def _scalar_matches(value, pattern) -> bool:
    if isinstance(pattern, bool):
        return isinstance(value, bool) and value == pattern
    if isinstance(pattern, (int, float)):
        return not isinstance(value, bool) and isinstance(value, (int, float)) and value == pattern
    if pattern is None:
        return value in (None, "", 0, False)
    if isinstance(pattern, str):
        if value == pattern:
            return True
        for alternative in pattern.split("|"):
            alternative = alternative.strip()
            if "&" in alternative or alternative[:1] in "<>" or alternative.startswith("="):
                raise UnsupportedPolicy(f"pattern operator in {pattern!r}")
            negate = alternative.startswith("!")
            if negate:
                alternative = alternative[1:].strip()
            if isinstance(value, (dict, list)) or value is None:
                ok = False
            else:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                ok = fnmatch.fnmatchcase(text, alternative)
            if ok != negate:
                return True
        return False
    raise UnsupportedPolicy(f"pattern value of type {type(pattern).__name__}")


def match(resource, pattern, path: str = "/") -> str | None:
    """Returns None when `resource` satisfies `pattern`, else a reason."""
    if isinstance(pattern, dict):
        if not isinstance(resource, dict):
            return f"{path}: expected a mapping"
        for key, sub in pattern.items():
            anchor = ANCHOR.match(key)
            if anchor:
                mod, name = anchor.group("mod"), anchor.group("key")
                if mod == "=":
                    if name in resource:
                        reason = match(resource[name], sub, f"{path}{name}/")
                        if reason:
                            return reason
                elif mod == "X":
                    if name in resource:
                        return f"{path}{name}: must not be set"
                else:
                    raise UnsupportedPolicy(f"anchor {key!r}")
            else:
                # Like Kyverno, a missing key is matched as null: only a null pattern accepts it.
                value = resource.get(key)
                if value is None and sub is not None:
                    return f"{path}{key}: required"
                if sub == "*":
                    continue
                reason = match(value, sub, f"{path}{key}/")
                if reason:
                    return reason
        return None
    if isinstance(pattern, list):
        if not pattern:
            raise UnsupportedPolicy(f"{path}: empty pattern list")
        if not isinstance(resource, list):
            return f"{path}: expected a list"
        first = pattern[0]
        if isinstance(first, dict):
            for i, item in enumerate(resource):
                reason = match(item, first, f"{path}{i}/")
                if reason:
                    return reason
            return None
        if isinstance(first, (str, int, float, bool)) or first is None:
            for item in resource:
                if not _scalar_matches(item, first):
                    return f"{path}: {item!r} does not match {first!r}"
            return None
        raise UnsupportedPolicy(f"{path}: nested list patterns")
    if isinstance(resource, list):
        for item in resource:
            if not _scalar_matches(item, pattern):
                return f"{path}: {item!r} does not match {pattern!r}"
        return None
    if not _scalar_matches(resource, pattern):
        return f"{path}: {resource!r} does not match {pattern!r}"
    return None


def _kind_matches(obj: dict, kind_expr: str) -> bool:
    parts = kind_expr.split("/")
    kind = parts[-1]
    if obj.get("kind") != kind:
        return False
    if len(parts) == 1:
        return True
    api = obj.get("apiVersion", "")
    group, version = api.split("/", 1) if "/" in api else ("", api)
    if len(parts) == 3:
        return parts[0] == group and parts[1] in (version, "*")
    return parts[0] in (group, version)


def _rule_kinds(rule: dict) -> list[str]:
    m = rule.get("match") or {}
    if set(m) - {"any"}:
        raise UnsupportedPolicy(f"rule {rule['name']}: only match.any is supported")
    kinds: list[str] = []
    for entry in m["any"]:
        res = entry.get("resources") or {}
        if set(entry) - {"resources"} or set(res) - {"kinds"}:
            raise UnsupportedPolicy(f"rule {rule['name']}: only match.any[].resources.kinds is supported")
        kinds.extend(res["kinds"])
    return kinds


def _pod_view(obj: dict) -> dict | None:
    """The pod (metadata + spec) Kyverno's auto-gen would check for a pod controller."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj
    if kind in POD_CONTROLLERS:
        return (obj.get("spec") or {}).get("template")
    if kind == "CronJob":
        return ((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec", {}).get("template")
    return None


def evaluate(policy: dict, obj: dict) -> list[Result]:
    """Evaluates every validate rule of `policy` that applies to `obj`."""
    results: list[Result] = []
    for rule in policy["spec"]["rules"]:
        unsupported = set(rule) - {"name", "match", "validate"}
        if unsupported:
            raise UnsupportedPolicy(f"rule {rule['name']}: {sorted(unsupported)}")
        validate = rule["validate"]
        if set(validate) - {"failureAction", "message", "pattern", "anyPattern"}:
            raise UnsupportedPolicy(f"rule {rule['name']}: validate fields {sorted(validate)}")
        kinds = _rule_kinds(rule)
        if kinds == ["Pod"]:
            target = _pod_view(obj)
        elif any(_kind_matches(obj, k) for k in kinds):
            target = obj
        else:
            target = None
        if target is None:
            continue
        patterns = [validate["pattern"]] if "pattern" in validate else validate["anyPattern"]
        reasons = [match(target, p) for p in patterns]
        passed = any(r is None for r in reasons)
        message = "" if passed else f"{validate.get('message', '')} ({'; '.join(r for r in reasons if r)})"
        results.append(Result(rule["name"], passed, message))
    return results
