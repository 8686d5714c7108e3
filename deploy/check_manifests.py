#!/usr/bin/env python3
"""Checks the manifests in deploy/ for what a schema cannot see.

Run by deploy/validate.sh after the schema validation, with the manifest files as arguments.
Exits non-zero naming every problem found. Needs Python 3.11+ (tomllib) and PyYAML (a
dependency of kubernetes-validate).

Checked:
- kustomization.yaml lists exactly the manifests;
- one object of each kind, all named `kinesis-relay`;
- the Deployment's selector matches its pod labels, and the Service's and the PDB's
  selectors select those pods;
- the Service's target ports and the probes' ports are container ports;
- the readiness probe is gRPC on 50051 for `kinesis_relay.v1.Relay`, the liveness probe gRPC
  for the overall service "";
- the pod runs as non-root with a read-only root filesystem and no capabilities;
- the ServiceAccount and ConfigMap the pod names exist; the file `--config` names is the
  ConfigMap's key on its mount; `state-dir` is on a writable volume;
- the ConfigMap's relay.toml parses as TOML, and, when a kinesis-relay binary that knows
  `--config` is found (KINESIS_RELAY_BIN, or target/release or target/debug), every key is
  one of its flags.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAME = "kinesis-relay"
GRPC_PORT = 50051
METRICS_PORT = 9090
RELAY_SERVICE = "kinesis_relay.v1.Relay"

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def load(files: list[str]) -> dict[str, dict]:
    objects: dict[str, dict] = {}
    for file in files:
        with open(HERE / file, encoding="utf-8") as stream:
            for document in yaml.safe_load_all(stream):
                if document is None:
                    continue
                kind = document.get("kind")
                if kind in objects:
                    problem(f"{file}: a second {kind}")
                objects[kind] = document
                name = document.get("metadata", {}).get("name")
                if name != NAME:
                    problem(f"{file}: {kind} is named {name!r}, expected {NAME!r}")
    return objects


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def check_kustomization(files: list[str]) -> None:
    with open(HERE / "kustomization.yaml", encoding="utf-8") as stream:
        kustomization = yaml.safe_load(stream)
    listed = kustomization.get("resources", [])
    if sorted(listed) != sorted(files):
        problem(f"kustomization.yaml lists {listed}, the manifests are {files}")
    on_disk = sorted(
        path.name
        for path in HERE.glob("*.yaml")
        if path.name != "kustomization.yaml"
    )
    if on_disk != sorted(files):
        problem(f"deploy/ holds {on_disk}, validate.sh checks {files}")


def relay_binary() -> Path | None:
    explicit = os.environ.get("KINESIS_RELAY_BIN")
    if explicit:
        return Path(explicit)
    found = [
        REPO / "target" / profile / "kinesis-relay" for profile in ("release", "debug")
    ]
    found = [path for path in found if path.is_file()]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def check_config_keys(config: dict) -> None:
    binary = relay_binary()
    if binary is None:
        print("relay.toml keys: no kinesis-relay binary built, flag names not checked")
        return
    try:
        help_text = subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        problem(f"running {binary} --help: {err}")
        return
    if not re.search(r"--config\b", help_text):
        print(f"relay.toml keys: {binary} has no --config yet, flag names not checked")
        return
    unknown = [key for key in config if not re.search(rf"--{re.escape(key)}(?![\w-])", help_text)]
    for key in unknown:
        problem(f"configmap.yaml: relay.toml key {key!r} is not a flag of {binary}")
    if not unknown:
        print(f"relay.toml keys: all {len(config)} are flags of {binary}")


def main() -> int:
    files = sys.argv[1:]
    if not files:
        print("usage: check_manifests.py MANIFEST...", file=sys.stderr)
        return 2
    check_kustomization(files)
    objects = load(files)
    for kind in ("ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"):
        if kind not in objects:
            problem(f"no {kind} in {files}")
    if problems:
        return report()

    deployment = objects["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    if not selects(spec["selector"]["matchLabels"], pod_labels):
        problem("Deployment: selector does not match the pod labels")
    if spec.get("replicas", 1) < 2:
        problem("Deployment: fewer than 2 replicas")
    if not selects(objects["Service"]["spec"]["selector"], pod_labels):
        problem("Service: selector does not select the relay pods")
    if not selects(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], pod_labels):
        problem("PodDisruptionBudget: selector does not select the relay pods")
    if objects["PodDisruptionBudget"]["spec"].get("minAvailable") != 1:
        problem("PodDisruptionBudget: minAvailable is not 1")
    if pod.get("serviceAccountName") != objects["ServiceAccount"]["metadata"]["name"]:
        problem("Deployment: serviceAccountName is not the ServiceAccount")
    annotations = objects["ServiceAccount"]["metadata"].get("annotations", {})
    if "eks.amazonaws.com/role-arn" not in annotations:
        problem("ServiceAccount: no eks.amazonaws.com/role-arn annotation")

    containers = pod["containers"]
    if len(containers) != 1:
        problem("Deployment: expected one container")
    container = containers[0]
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    if ports.get("grpc") != GRPC_PORT or ports.get("metrics") != METRICS_PORT:
        problem(f"container ports are {ports}, expected grpc {GRPC_PORT} and metrics {METRICS_PORT}")
    service_ports = {port["name"]: port for port in objects["Service"]["spec"]["ports"]}
    if objects["Service"]["spec"].get("type", "ClusterIP") != "ClusterIP":
        problem("Service: not ClusterIP")
    for name, number in (("grpc", GRPC_PORT), ("metrics", METRICS_PORT)):
        port = service_ports.get(name)
        if port is None:
            problem(f"Service: no port named {name}")
            continue
        if port["port"] != number:
            problem(f"Service: port {name} is {port['port']}, expected {number}")
        target = port.get("targetPort", port["port"])
        if target not in ports and target not in ports.values():
            problem(f"Service: port {name} targets {target!r}, not a container port")

    readiness = container.get("readinessProbe", {}).get("grpc")
    if readiness != {"port": GRPC_PORT, "service": RELAY_SERVICE}:
        problem(f"readinessProbe: expected grpc on {GRPC_PORT} for {RELAY_SERVICE}, got {readiness}")
    liveness = container.get("livenessProbe", {}).get("grpc")
    if liveness is None or liveness.get("port") != GRPC_PORT or liveness.get("service", "") != "":
        problem(f"livenessProbe: expected grpc on {GRPC_PORT} for service \"\", got {liveness}")

    pod_security = pod.get("securityContext", {})
    security = container.get("securityContext", {})
    if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
        problem("not runAsNonRoot")
    if not security.get("readOnlyRootFilesystem"):
        problem("root filesystem not read-only")
    if security.get("allowPrivilegeEscalation") is not False:
        problem("allowPrivilegeEscalation not false")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problem("capabilities: not drop ALL")
    resources = container.get("resources", {})
    for bound in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(bound, {})):
            problem(f"resources.{bound}: cpu and memory expected")
    if "terminationGracePeriodSeconds" not in pod:
        problem("no terminationGracePeriodSeconds")
    env = {variable["name"]: variable for variable in container.get("env", [])}
    if env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        problem("env POD_NAME is not the downward API's metadata.name")

    # The config file: mounted from the ConfigMap where --config says.
    args = container.get("args", [])
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        problem(f"container args {args} do not pass --config FILE")
        return report()
    config_path = Path(args[args.index("--config") + 1])
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts = {mount["mountPath"]: mount for mount in container.get("volumeMounts", [])}
    mount = mounts.get(str(config_path.parent))
    config_map = objects["ConfigMap"]
    if mount is None:
        problem(f"nothing is mounted at {config_path.parent} (--config {config_path})")
    else:
        source = volumes.get(mount["name"], {}).get("configMap", {})
        if source.get("name") != config_map["metadata"]["name"]:
            problem(f"{config_path.parent} is not the ConfigMap {config_map['metadata']['name']}")
    text = config_map.get("data", {}).get(config_path.name)
    if text is None:
        problem(f"ConfigMap has no key {config_path.name}")
        return report()
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        problem(f"configmap.yaml: {config_path.name} is not valid TOML: {err}")
        return report()
    if not config.get("stream"):
        problem("relay.toml: no stream")
    for key, port in (("listen", GRPC_PORT), ("metrics-listen", METRICS_PORT)):
        if not str(config.get(key, "")).endswith(f":{port}"):
            problem(f"relay.toml: {key} is {config.get(key)!r}, the pod exposes {port}")
    state_dir = config.get("state-dir")
    if state_dir is not None:
        state_mount = mounts.get(state_dir)
        if state_mount is None or state_mount.get("readOnly"):
            problem(f"relay.toml: state-dir {state_dir} is not a writable volume (read-only root)")
    check_config_keys(config)
    return report()


def report() -> int:
    for message in problems:
        print(f"deploy: {message}", file=sys.stderr)
    if problems:
        print(f"check_manifests: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_manifests: deploy/ manifests consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
