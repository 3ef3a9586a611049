#!/usr/bin/env python3
"""Helm release actions against a real API server, for the Rust tests in operator/tests/helm.rs.

The real Helm engine (Helm v4's Go library through helm-python-sdk, pinned in requirements.txt):
the same code path as the `helm` CLI, without a helm binary. One action per run:

    helm_release.py --kubeconfig FILE --namespace NS install   RELEASE CHART [--values JSON]
    helm_release.py --kubeconfig FILE --namespace NS upgrade   RELEASE CHART [--values JSON]
                                                               [--reuse-values | --reset-then-reuse-values]
    helm_release.py --kubeconfig FILE --namespace NS status    RELEASE
    helm_release.py --kubeconfig FILE --namespace NS uninstall RELEASE

It prints one JSON object on stdout: {"ok": true, "release": {...}} (the release summary; the
rendered `manifest` comes with install and upgrade, `helm status`'s summary has none), or
{"ok": false, "error": "<Helm's message>", "kind": "<exception class>"} with exit status 1 when
Helm refuses. Exit status 2 means the tools are missing or the arguments are wrong.

Installs and upgrades do not wait for pods (the test control plane has no kubelet): the release
is `deployed` once Helm has applied every object, as `helm install` without `--wait`.
"""

from __future__ import annotations

import argparse
import json
import sys

try:
    from helm_python import _native
    from helm_python.config import Config
    from helm_python.errors import HelmError
except ImportError as missing:  # pragma: no cover - environment problem
    print(json.dumps({"ok": False, "kind": "ImportError", "error": f"missing Python package {missing.name}: "
                      "pip install -r charts/tests/requirements.txt"}))
    sys.exit(2)


def upgrade_reset_then_reuse(cfg: Config, chart: str, release: str, values: dict, namespace: str) -> dict:
    """`helm upgrade --reset-then-reuse-values`: the library supports the option
    (reset_then_reuse_values in helm_upgrade's options), the Python wrapper does not expose it,
    so this calls the library as Config.upgrade does, with that one option added."""
    payload = _native.call_string(
        "helm_upgrade",
        cfg._raw(),
        _native.HANDLE(0),  # no cancellation context
        _native.HANDLE(0),  # no loaded chart: the chart is the reference below
        chart,
        release,
        json.dumps(values),
        json.dumps({"namespace": namespace, "reset_then_reuse_values": True}),
    )
    return json.loads(payload)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("action", choices=["install", "upgrade", "status", "uninstall"])
    parser.add_argument("release")
    parser.add_argument("chart", nargs="?")
    parser.add_argument("--values", default="{}", help="user-supplied values as JSON (--set)")
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument("--reuse-values", action="store_true")
    reuse.add_argument("--reset-then-reuse-values", action="store_true")
    args = parser.parse_args()
    if args.action in ("install", "upgrade") and not args.chart:
        parser.error(f"{args.action} needs a chart")
    values = json.loads(args.values)

    with Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace) as cfg:
        try:
            if args.action == "install":
                release = cfg.install(args.chart, args.release, values, namespace=args.namespace, timeout=120)
            elif args.action == "upgrade" and args.reset_then_reuse_values:
                release = upgrade_reset_then_reuse(cfg, args.chart, args.release, values, args.namespace)
            elif args.action == "upgrade":
                release = cfg.upgrade(args.chart, args.release, values, namespace=args.namespace, timeout=120,
                                      reuse_values=args.reuse_values)
            elif args.action == "status":
                release = cfg.status(args.release)
            else:
                release = cfg.uninstall(args.release, timeout=120)
        except HelmError as refused:
            print(json.dumps({"ok": False, "kind": type(refused).__name__, "error": str(refused)}))
            return 1
    print(json.dumps({"ok": True, "release": release}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
