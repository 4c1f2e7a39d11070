#!/usr/bin/env python3
"""Checks the deployment files without Docker or Kubernetes (run by scripts/check-deploy.sh).

- deploy/kubernetes/*.yaml: strict schema validation (unknown fields fail) with
  kubernetes-validate against two Kubernetes versions; kustomization.yaml lists every manifest;
  no namespace; pod security (non-root, read-only root, no privilege escalation, ALL
  capabilities dropped), requests and limits; references between the objects (ConfigMap and
  Secret names and keys, volumes, selectors, Service ports); /health probes on the servers;
  terminationGracePeriodSeconds above --grace plus --lease.
- deploy/compose.yaml: the Compose specification's JSON schema (shipped by check-jsonschema)
  with jsonschema, after ${VAR} interpolation; depends_on, secrets and volumes resolve; a
  service waited for as completed does not restart, one waited for as healthy has a healthcheck;
  /health healthchecks; stop_grace_period above --grace plus --lease.
- Every container that runs tessera (manifests, compose file, the Dockerfile's CMD): its
  arguments, plus its TESSERA_* variables turned into their flags, are run through the real
  binary with `--help`, which clap parses (subcommand, flags, values) before printing help.
- Dockerfile and .dockerignore: a light lint.

Environment: TESSERA_BIN (the binary), TESSERA_DEPLOY_K8S_VERSIONS (default "1.29 1.35").
Ends with `check-deploy: N passed, N failed`; exits 1 when anything failed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_DIR = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BIN = os.environ.get("TESSERA_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR") or "/var/tmp/tessera-target") / "debug" / "tessera"
)
K8S_VERSIONS = (os.environ.get("TESSERA_DEPLOY_K8S_VERSIONS") or "1.29 1.35").split()
# The image's user and data dir (Dockerfile), which the manifests must agree with.
USER_ID = 10001
DEFAULT_GRACE = DEFAULT_LEASE = 10.0  # seconds: tessera's defaults for --grace and --lease

passed = 0
failed = 0


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def check(label: str, where: Path, problems: list[str]) -> None:
    """One check: passes without problems, else fails naming the file and each problem."""
    global passed, failed
    if problems:
        failed += 1
        for p in problems:
            print(f"FAIL {rel(where)}: {label}: {p}", flush=True)
    else:
        passed += 1
        print(f"ok   {rel(where)}: {label}", flush=True)


# ---------------------------------------------------------------------------------------------
# Durations and the tessera binary


def seconds(text: str | int | float) -> float:
    """`10s`, `500ms`, `1m30s`, `2h`, or a number of seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * unit[u] for n, u in parts)


def run_bin(argv: list[str]) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as cwd:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": cwd, "LANG": "C.UTF-8"}
        return subprocess.run(
            [BIN, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )


_help_cache: dict[str, subprocess.CompletedProcess] = {}

OPTION_LINE = re.compile(r"^ {2,6}(?:-\w, )?--([A-Za-z0-9][\w-]*)(.*)$")
ENV_NOTE = re.compile(r"\[env: ([A-Za-z_][A-Za-z0-9_]*)")


def env_flags(subcommand: str) -> dict[str, tuple[str, bool]] | None:
    """The environment variables `tessera SUBCOMMAND --help` lists: NAME -> (flag, takes value)."""
    if subcommand not in _help_cache:
        _help_cache[subcommand] = run_bin([subcommand, "--help"])
    out = _help_cache[subcommand]
    if out.returncode != 0:
        return None
    table: dict[str, tuple[str, bool]] = {}
    flag = None
    for line in out.stdout.splitlines():
        m = OPTION_LINE.match(line)
        if m:
            flag = (m.group(1), "<" in m.group(2))
        for name in ENV_NOTE.findall(line):
            if flag:
                table[name] = flag
    return table


TRUE = {"true", "1", "yes", "on", "y"}
FALSE = {"false", "0", "no", "off", "n", ""}


def check_tessera_command(label: str, where: Path, argv: list[str], env: dict[str, str]) -> None:
    """`tessera ARGV [flags of its TESSERA_* variables] --help` must exit 0.

    `env` holds the variables the container is given (not the image's); TESSERA_* ones that
    the subcommand does not know fail: clap would ignore them at run time (a typo, or a worker
    left on its default database because it lacks TESSERA_DB)."""
    problems: list[str] = []
    if not argv or argv[0].startswith("-"):
        check(label, where, [f"no subcommand in {argv!r}"])
        return
    sub = argv[0]
    table = env_flags(sub)
    extra: list[str] = []
    if table is None:
        err = " ".join(_help_cache[sub].stderr.split())[:400]
        check(f"{label}: tessera {shlex.join(argv)}", where, [f"`tessera {sub} --help` failed: {err}"])
        return
    else:
        given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
        for name, value in sorted(env.items()):
            if not name.startswith("TESSERA_"):
                continue
            if name not in table:
                problems.append(f"`tessera {sub}` has no environment variable {name}")
                continue
            flag, takes_value = table[name]
            if f"--{flag}" in given:
                continue  # the argument wins over the variable
            if takes_value:
                extra += [f"--{flag}", value]
            elif value.lower() in TRUE:
                extra.append(f"--{flag}")
            elif value.lower() not in FALSE:
                problems.append(f"{name}={value!r} is not a boolean")
    full = [*argv, *extra, "--help"]
    out = run_bin(full)
    if out.returncode != 0:
        err = " ".join(out.stderr.split())[:400]
        problems.append(f"`tessera {shlex.join(full)}` exited {out.returncode}: {err}")
    check(f"{label}: tessera {shlex.join(argv)}", where, problems)


def grace_and_lease(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    def value(flag: str, var: str, default: float) -> float:
        for i, a in enumerate(argv):
            if a == flag and i + 1 < len(argv):
                return seconds(argv[i + 1])
            if a.startswith(flag + "="):
                return seconds(a.split("=", 1)[1])
        return seconds(env[var]) if var in env else default

    return value("--grace", "TESSERA_GRACE", DEFAULT_GRACE), value(
        "--lease", "TESSERA_LEASE", DEFAULT_LEASE
    )


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def under(path: str, mounts: dict[str, bool]) -> bool | None:
    """Whether `path` lies in a mount: True writable, False read-only, None not mounted."""
    best = None
    for target, writable in mounts.items():
        t = target.rstrip("/") or "/"
        if path == t or path.startswith(t + "/"):
            if best is None or len(t) > len(best[0]):
                best = (t, writable)
    return None if best is None else best[1]


def listen_port(argv: list[str], env: dict[str, str]) -> int:
    addr = flag_value(argv, "--addr") or env.get("TESSERA_ADDR") or "127.0.0.1:8080"
    return int(addr.rsplit(":", 1)[1])


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(value: str) -> list[str] | None:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed) else None


def check_dockerfile() -> dict:
    """Lints the Dockerfile; returns what the other checks use (CMD, ENV)."""
    info: dict = {"cmd": None, "env": {}}
    if not DOCKERFILE.is_file():
        check("exists", DOCKERFILE, ["no Dockerfile at the repository root"])
        return info
    ins = dockerfile_instructions(DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[dict] = []
    for word, rest in ins:
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif word == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], ""), rest)
            parts = image.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"image": parts[0], "name": name, "ins": []})
        elif stages:
            stages[-1]["ins"].append((word, rest))
    problems: list[str] = []
    if len(stages) < 2:
        problems.append("not multi-stage (a builder stage and a runtime stage)")
        check("multi-stage build", DOCKERFILE, problems)
        return info
    builder, final = stages[0], stages[-1]

    # Builder: a Rust image at least as recent as the workspace's rust-version; --locked build.
    rust_version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"][
        "rust-version"
    ]
    m = re.fullmatch(r"(?:docker\.io/(?:library/)?)?rust:(\d+)(?:\.(\d+))?(?:\.\d+)?(?:-([\w.-]+))?", builder["image"])
    if not m:
        problems.append(f"the builder image {builder['image']!r} is not rust:VERSION[-DISTRO]")
    else:
        have = (int(m[1]), int(m[2]) if m[2] is not None else 10**6)  # rust:1 = newest 1.x
        need = tuple(int(x) for x in rust_version.split(".")[:2])
        if have < need:
            problems.append(f"builder {builder['image']} is older than rust-version {rust_version}")
        if m[3] and "bookworm" not in m[3]:
            problems.append(f"builder {builder['image']} is not bookworm, as the runtime is")
    check(f"builder image ({builder['image']}, rust-version {rust_version})", DOCKERFILE, problems)

    runs = " ".join(r for w, r in builder["ins"] if w == "RUN")
    problems = []
    if not re.search(r"cargo build\b[^&;]*--release", runs):
        problems.append("the builder does not run `cargo build --release`")
    if not re.search(r"cargo build\b[^&;]*--locked", runs):
        problems.append("`cargo build` without --locked (builds must use Cargo.lock)")
    if not re.search(r"cargo build\b[^&;]*-p tessera\b", runs):
        problems.append("`cargo build` without `-p tessera`")
    check("builder runs cargo build --release --locked -p tessera", DOCKERFILE, problems)

    # Runtime: debian:bookworm-slim, ca-certificates only, non-root, tessera entrypoint.
    problems = []
    if final["image"] != "debian:bookworm-slim":
        problems.append(f"runtime image is {final['image']!r}, not debian:bookworm-slim")
    for w, r in final["ins"]:
        if w == "RUN" and "apt-get install" in r:
            pkgs = re.search(r"apt-get install((?:\s+(?:-\S+|[a-z0-9][\w.+-]*))+)", r)
            names = [p for p in (pkgs[1].split() if pkgs else []) if not p.startswith("-")]
            if names != ["ca-certificates"]:
                problems.append(f"the runtime installs {names}, not ca-certificates only")
            if "--no-install-recommends" not in r:
                problems.append("apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in r:
                problems.append("apt lists are left in the image")
        if w == "ADD" and re.search(r"https?://", r):
            problems.append(f"ADD from a URL: {r}")
    check("runtime image debian:bookworm-slim with ca-certificates only", DOCKERFILE, problems)

    problems = []
    users = [r for w, r in final["ins"] if w == "USER"]
    if not users:
        problems.append("the runtime stage has no USER: it would run as root")
    else:
        user = users[-1].split(":")[0]
        if user in ("root", "0"):
            problems.append(f"USER {users[-1]} is root")
        elif user != str(USER_ID):
            problems.append(f"USER {users[-1]}: the manifests run as {USER_ID}")
    check(f"non-root USER {USER_ID}", DOCKERFILE, problems)

    problems = []
    copies = [r for w, r in final["ins"] if w == "COPY"]
    if not any(re.search(r"--from=\S+\s+\S+\s+/usr/local/bin/tessera$", c) for c in copies):
        problems.append("no `COPY --from=<builder> ... /usr/local/bin/tessera`")
    entry = [r for w, r in final["ins"] if w == "ENTRYPOINT"]
    if not entry or exec_form(entry[-1]) not in (["tessera"], ["/usr/local/bin/tessera"]):
        problems.append(f"ENTRYPOINT is {entry[-1] if entry else None!r}, not [\"tessera\"] (exec form)")
    cmd = [r for w, r in final["ins"] if w == "CMD"]
    info["cmd"] = exec_form(cmd[-1]) if cmd else None
    if not cmd or info["cmd"] is None:
        problems.append("no CMD in exec (JSON) form")
    elif info["cmd"][:1] != ["serve"]:
        problems.append(f"CMD {cmd[-1]} does not run `serve`")
    exposed = " ".join(r for w, r in final["ins"] if w == "EXPOSE").split()
    if "8080" not in exposed and "8080/tcp" not in exposed:
        problems.append("EXPOSE 8080 missing")
    for w, r in final["ins"]:
        if w == "ENV":
            for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", r):
                info["env"][k] = v.strip('"')
    data_dir = info["env"].get("TESSERA_DATA_DIR")
    if not data_dir:
        problems.append("no ENV TESSERA_DATA_DIR (the data dir)")
    elif not any(
        w == "RUN" and re.search(rf"(install -d|mkdir|chown)\b[^&;]*{re.escape(data_dir)}", r)
        for w, r in final["ins"]
    ):
        problems.append(f"the data dir {data_dir} is not created (and given to the user)")
    check("binary, ENTRYPOINT tessera, CMD serve, EXPOSE 8080, data dir", DOCKERFILE, problems)

    # The build context: what the Dockerfile copies is in the repository and not ignored.
    problems = []
    ignored = []
    if not DOCKERIGNORE.is_file():
        problems.append(".dockerignore missing")
    else:
        ignored = [
            l.strip().lstrip("/").rstrip("/")
            for l in DOCKERIGNORE.read_text().splitlines()
            if l.strip() and not l.strip().startswith("#")
        ]
        for must in ("target", ".git"):
            if must not in ignored:
                problems.append(f".dockerignore does not exclude {must}/")
    for stage in stages:
        for w, r in stage["ins"]:
            if w == "COPY" and "--from" not in r:
                srcs = [s for s in r.split() if not s.startswith("--")][:-1]
                for src in srcs:
                    if not (ROOT / src).exists():
                        problems.append(f"COPY {src}: not in the repository")
                    elif src.rstrip("/") in ignored:
                        problems.append(f"COPY {src}: excluded by .dockerignore")
    check("build context (.dockerignore, COPY sources)", DOCKERFILE, problems)

    if info["cmd"]:
        check_tessera_command("default CMD", DOCKERFILE, info["cmd"], {})
    return info


# ---------------------------------------------------------------------------------------------
# Kubernetes

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "resources", "namespace", "namePrefix", "nameSuffix", "labels",
    "commonLabels", "commonAnnotations", "images", "replicas", "patches", "configMapGenerator",
    "secretGenerator", "generatorOptions", "components", "metadata",
}


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in POD_KINDS:
        return (spec.get("template") or {}).get("spec")
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return None


def is_tessera_image(image: str | None) -> bool:
    if not image:
        return False
    name = image.split("@")[0]
    name = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    return name.rsplit("/", 1)[-1] == "tessera"


def k8s_expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command and args ($$ escapes)."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]),
        arg,
    )


def load_yaml_docs(path: Path) -> tuple[list, str | None]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None], None
    except yaml.YAMLError as e:
        return [], f"not valid YAML: {e}"


def check_kubernetes(docker: dict) -> None:
    files = sorted(p for p in K8S_DIR.glob("*.y*ml"))
    if not files:
        check("manifests", K8S_DIR, ["no manifests"])
        return
    supported = kv.all_versions()
    for v in K8S_VERSIONS:
        if not any(kv.major_minor(s) == kv.major_minor(v) for s in supported):
            check(f"Kubernetes {v}", K8S_DIR, [f"kubernetes-validate has no schemas for {v}"])
    docs: list[tuple[Path, dict]] = []
    kustomization = None
    for path in files:
        loaded, err = load_yaml_docs(path)
        if err:
            check("YAML", path, [err])
            continue
        for doc in loaded:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                check("document", path, ["a document without apiVersion and kind"])
                continue
            if doc["kind"] == "Kustomization":
                kustomization = (path, doc)
            else:
                docs.append((path, doc))

    # kustomization.yaml lists every manifest of the directory, and only those.
    problems = []
    if kustomization is None:
        problems.append("no kustomization.yaml")
    else:
        kpath, kdoc = kustomization
        listed = kdoc.get("resources") or []
        unknown = set(kdoc) - KUSTOMIZATION_KEYS
        if unknown:
            problems.append(f"unknown kustomization fields {sorted(unknown)}")
        for r in listed:
            if not (K8S_DIR / r).is_file():
                problems.append(f"lists {r}, which does not exist")
        for path in files:
            if path != kpath and path.name not in listed:
                problems.append(f"does not list {path.name}")
    check("kustomization lists every manifest", kustomization[0] if kustomization else K8S_DIR, problems)

    # The schemas, strict (unknown fields fail), against each version.
    for path, doc in docs:
        name = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name')}"
        for version in K8S_VERSIONS:
            problems = []
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "(top)"
                problems.append(f"{where}: {e.message}")
            except kv.SchemaNotFoundError as e:
                problems.append(e.message)
            except (kv.VersionNotSupportedError, kv.InvalidSchemaError) as e:
                problems.append(e.message)
            check(f"{name} valid for Kubernetes {version} (strict)", path, problems)

    by_kind: dict[str, dict[str, dict]] = {}
    for path, doc in docs:
        by_kind.setdefault(doc["kind"], {})[(doc.get("metadata") or {}).get("name")] = doc

    def data_of(kind: str, name: str) -> dict[str, str] | None:
        obj = by_kind.get(kind, {}).get(name)
        if obj is None:
            return None
        data = {k: str(v) for k, v in (obj.get("stringData") or {}).items()}
        for k, v in (obj.get("data") or {}).items():
            data.setdefault(k, base64.b64decode(v).decode() if kind == "Secret" else str(v))
        return data

    # Namespace-agnostic.
    problems = [
        f"{rel(p)}: {d['kind']}/{d['metadata'].get('name')} sets metadata.namespace"
        for p, d in docs
        if (d.get("metadata") or {}).get("namespace")
    ]
    check("no namespace in any manifest (kubectl -n / kustomize namespace decide)", K8S_DIR, problems)


    for path, doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        problems = []
        psc = spec.get("securityContext") or {}
        containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
        for c in containers:
            csc = c.get("securityContext") or {}
            cname = f"container {c.get('name')}"
            if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                problems.append(f"{cname}: runAsNonRoot is not true")
            if csc.get("runAsUser", psc.get("runAsUser")) == 0:
                problems.append(f"{cname}: runAsUser 0")
            if csc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cname}: allowPrivilegeEscalation is not false")
            if csc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cname}: readOnlyRootFilesystem is not true")
            if csc.get("privileged"):
                problems.append(f"{cname}: privileged")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{cname}: capabilities.drop lacks ALL")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        problems.append(f"{cname}: no resources.{part}.{r}")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append("uses the host's network, PIDs or IPC")
        check(f"{name}: non-root, read-only, no escalation, ALL dropped, requests+limits", path, problems)

        # References: volumes, ConfigMaps, Secrets, their keys.
        problems = []
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for v in volumes.values():
            for kind, key, field in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
                src = v.get(key)
                if src is None:
                    continue
                data = data_of(kind, src.get(field))
                if data is None and not src.get("optional"):
                    problems.append(f"volume {v['name']}: no {kind} {src.get(field)} in {rel(K8S_DIR)}")
                for item in src.get("items") or []:
                    if data is not None and item["key"] not in data:
                        problems.append(f"volume {v['name']}: {kind} {src.get(field)} has no key {item['key']}")
            if "hostPath" in v:
                problems.append(f"volume {v['name']}: hostPath")
        for c in containers:
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes:
                    problems.append(f"container {c['name']}: mounts undefined volume {m['name']}")
            for ef in c.get("envFrom") or []:
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    ref = ef.get(key)
                    if ref and data_of(kind, ref["name"]) is None and not ref.get("optional"):
                        problems.append(f"container {c['name']}: envFrom {kind} {ref['name']} does not exist")
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = vf.get(key)
                    if not ref or ref.get("optional"):
                        continue
                    data = data_of(kind, ref["name"])
                    if data is None:
                        problems.append(f"container {c['name']}: {e['name']} from missing {kind} {ref['name']}")
                    elif ref["key"] not in data:
                        problems.append(f"container {c['name']}: {e['name']}: {kind} {ref['name']} has no key {ref['key']}")
        if doc["kind"] == "Job" and spec.get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append("a Job's restartPolicy must be Never or OnFailure")
        if doc["kind"] in POD_KINDS - {"Job"}:
            sel = ((doc["spec"].get("selector") or {}).get("matchLabels")) or {}
            labels = ((doc["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                problems.append(f"selector {sel} does not match the pod labels {labels}")
        check(f"{name}: volumes, ConfigMaps, Secrets and keys resolve", path, problems)

        # The containers that run tessera.
        for c in containers:
            if not is_tessera_image(c.get("image")):
                continue
            command = c.get("command")
            if command and Path(command[0]).name != "tessera":
                print(f"note {rel(path)}: {name} container {c['name']} runs {command[0]}, not tessera", flush=True)
                continue
            env: dict[str, str] = dict(docker["env"])  # the image's ENV
            given: set[str] = set()  # what the manifest gives (envFrom and env)
            for ef in c.get("envFrom") or []:
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    ref = ef.get(key)
                    if ref:
                        for k, v in (data_of(kind, ref["name"]) or {}).items():
                            env[ef.get("prefix", "") + k] = v
                            given.add(ef.get("prefix", "") + k)
            for e in c.get("env") or []:
                if "value" in e:
                    env[e["name"]] = k8s_expand(str(e["value"]), env)
                else:
                    vf = e.get("valueFrom") or {}
                    ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
                    kind = "ConfigMap" if "configMapKeyRef" in vf else "Secret"
                    env[e["name"]] = (data_of(kind, ref["name"]) or {}).get(ref["key"], "x") if ref else "x"
                given.add(e["name"])
            argv = [k8s_expand(str(a), env) for a in (command or [])[1:] + (c.get("args") or [])]
            if not command and not c.get("args"):
                argv = list(docker["cmd"] or [])
            check_tessera_command(
                f"{name} container {c['name']}", path, argv, {k: env[k] for k in given}
            )
            check_tessera_pod(path, doc, spec, c, argv, env)

    # Services select pods and reach a port of theirs; PodDisruptionBudgets select pods.
    templates = [
        (doc, ((doc["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}, pod_spec(doc))
        for _, doc in docs
        if doc["kind"] in POD_KINDS - {"Job"}
    ]
    for path, doc in docs:
        if doc["kind"] not in ("Service", "PodDisruptionBudget"):
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        sel = doc["spec"].get("selector") or {}
        if doc["kind"] == "PodDisruptionBudget":
            sel = sel.get("matchLabels") or {}
        matched = [(d, s) for d, labels, s in templates if sel and all(labels.get(k) == v for k, v in sel.items())]
        problems = [] if matched else [f"selector {sel} matches no pod template"]
        if doc["kind"] == "Service":
            for port in doc["spec"].get("ports") or []:
                target = port.get("targetPort", port.get("port"))
                for d, s in matched:
                    ports = [p for c in s.get("containers") or [] for p in c.get("ports") or []]
                    if not any(p.get("name") == target or p.get("containerPort") == target for p in ports):
                        problems.append(f"port {port.get('name')}: {d['kind']}/{d['metadata']['name']} has no container port {target}")
        check(f"{name} selects pods and their ports", path, problems)


def check_tessera_pod(path: Path, doc: dict, spec: dict, c: dict, argv: list[str], env: dict[str, str]) -> None:
    name = f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}"
    sub = argv[0] if argv else ""
    problems = []
    mounts = {m["mountPath"]: not m.get("readOnly", False) for m in c.get("volumeMounts") or []}
    data_dir = flag_value(argv, "--data-dir") or env.get("TESSERA_DATA_DIR")
    ro_root = (c.get("securityContext") or {}).get("readOnlyRootFilesystem")
    if ro_root:
        if not data_dir:
            problems.append("no data dir (TESSERA_DATA_DIR) with a read-only root file system")
        elif under(data_dir, mounts) is not True:
            problems.append(f"the data dir {data_dir} is not on a writable volume")
        if under("/tmp", mounts) is not True:
            problems.append("/tmp is not a writable volume (read-only root file system)")
    tokens = flag_value(argv, "--tokens-file") or env.get("TESSERA_TOKENS_FILE")
    if tokens and under(tokens, mounts) is None:
        problems.append(f"the tokens file {tokens} is on no volume")
    if sub in ("serve", "worker"):
        try:
            grace, lease = grace_and_lease(argv, env)
            tgps = spec.get("terminationGracePeriodSeconds", 30)
            if not tgps > grace + lease:
                problems.append(
                    f"terminationGracePeriodSeconds {tgps} is not above --grace {grace:g}s + --lease {lease:g}s"
                )
        except ValueError as e:
            problems.append(str(e))
    if sub == "serve":
        port = listen_port(argv, env)
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        if port not in ports.values():
            problems.append(f"no containerPort {port} (--addr)")
        for probe in ("readinessProbe", "livenessProbe"):
            get = (c.get(probe) or {}).get("httpGet") or {}
            target = ports.get(get.get("port"), get.get("port"))
            if get.get("path") != "/health" or target != port:
                problems.append(f"{probe} is not GET /health on port {port}")
    check(f"{name}: data dir, tokens file, probes, termination grace", path, problems)


# ---------------------------------------------------------------------------------------------
# Compose

INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value, placeholders: list[str]):
    """Compose's ${VAR} interpolation with no variable set: defaults are used, and a required or
    bare variable becomes `placeholder` (noted)."""
    if isinstance(value, dict):
        return {k: interpolate(v, placeholders) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, placeholders) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match) -> str:
        if m[0] == "$$":
            return "$"
        name, op, arg = m[1] or m[4], m[2], m[3]
        if op in (":-", "-"):
            return interpolate(arg or "", placeholders)
        if op in (":+", "+"):
            return ""
        placeholders.append(name)
        return "placeholder"

    return INTERPOLATION.sub(repl, value)


def compose_schema() -> dict:
    ref = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(ref.read_text())


def command_list(value) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(x) for x in value]


def env_dict(value) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    out = {}
    for item in value or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def compose_mounts(svc: dict) -> dict[str, bool]:
    mounts: dict[str, bool] = {}
    tmpfs = svc.get("tmpfs")
    for t in [tmpfs] if isinstance(tmpfs, str) else tmpfs or []:
        mounts[str(t).split(":")[0]] = True
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            target = parts[1] if len(parts) > 1 else parts[0]
            mounts[target] = not (len(parts) > 2 and "ro" in parts[2].split(","))
        else:
            mounts[v["target"]] = not v.get("read_only", False)
    for s in svc.get("secrets") or []:
        target = s if isinstance(s, str) else s.get("target") or s["source"]
        mounts[target if target.startswith("/") else f"/run/secrets/{target}"] = False
    return mounts


def check_compose(docker: dict) -> None:
    if not COMPOSE.is_file():
        check("exists", COMPOSE, ["no compose file"])
        return
    loaded, err = load_yaml_docs(COMPOSE)
    if err or len(loaded) != 1 or not isinstance(loaded[0], dict):
        check("YAML", COMPOSE, [err or "not one YAML mapping"])
        return
    placeholders: list[str] = []
    doc = interpolate(loaded[0], placeholders)
    print(f"note {rel(COMPOSE)}: variables without a default set to `placeholder`: "
          f"{', '.join(sorted(set(placeholders))) or 'none'}", flush=True)

    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(doc), key=lambda e: list(map(str, e.path)))
    check(
        f"Compose specification schema ({schema.get('$id')}, {validator_cls.__name__})",
        COMPOSE,
        [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message[:300]}" for e in errors],
    )
    if errors:
        return

    services: dict = doc.get("services") or {}
    top_secrets = set(doc.get("secrets") or {})
    top_volumes = set(doc.get("volumes") or {})
    problems = []
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        for dep, how in deps.items():
            target = services.get(dep)
            if target is None:
                problems.append(f"{name}: depends on undefined service {dep}")
                continue
            cond = (how or {}).get("condition", "service_started")
            if cond == "service_completed_successfully" and target.get("restart", "no") not in ("no", "on-failure"):
                problems.append(f"{name}: waits for {dep} to complete, but {dep} restarts ({target.get('restart')})")
            if cond == "service_healthy" and not (target.get("healthcheck") or {}).get("test"):
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        for s in svc.get("secrets") or []:
            src = s if isinstance(s, str) else s.get("source")
            if src not in top_secrets:
                problems.append(f"{name}: undefined secret {src}")
        for v in svc.get("volumes") or []:
            src = v.split(":")[0] if isinstance(v, str) and ":" in v else (v.get("source") if isinstance(v, dict) and v.get("type", "volume") == "volume" else None)
            if src and not src.startswith((".", "/", "~", "$")) and src not in top_volumes:
                problems.append(f"{name}: undefined volume {src}")
        replicas = (svc.get("deploy") or {}).get("replicas", svc.get("scale", 1))
        if int(replicas) > 1:
            if svc.get("container_name"):
                problems.append(f"{name}: {replicas} replicas cannot share container_name")
            for p in svc.get("ports") or []:
                published = str(p.get("published", "")) if isinstance(p, dict) else (str(p).rsplit(":", 1)[0].split(":")[-1] if ":" in str(p) else "")
                if published and "-" not in published:
                    problems.append(f"{name}: {replicas} replicas cannot all publish host port {published}")
    for name, sec in (doc.get("secrets") or {}).items():
        if sec.get("file") and not (COMPOSE.parent / sec["file"]).resolve().is_relative_to(COMPOSE.parent):
            problems.append(f"secret {name}: file {sec['file']} is outside deploy/")
    check("depends_on, secrets, volumes and replicas are consistent", COMPOSE, problems)

    for name, svc in services.items():
        if not is_tessera_image(svc.get("image")) and not svc.get("build"):
            continue
        entry = command_list(svc.get("entrypoint"))
        if entry and Path(entry[0]).name != "tessera":
            print(f"note {rel(COMPOSE)}: service {name} runs {entry[0]}, not tessera", flush=True)
            continue
        argv = (entry or [])[1:] + (command_list(svc.get("command")) or ([] if entry else list(docker["cmd"] or [])))
        env = dict(docker["env"])
        explicit = env_dict(svc.get("environment"))
        env.update(explicit)
        check_tessera_command(f"service {name}", COMPOSE, argv, explicit)
        sub = argv[0] if argv else ""
        problems = []
        mounts = compose_mounts(svc)
        data_dir = flag_value(argv, "--data-dir") or env.get("TESSERA_DATA_DIR")
        if svc.get("read_only"):
            if not data_dir or under(data_dir, mounts) is not True:
                problems.append(f"read_only, and the data dir {data_dir} is on no writable volume or tmpfs")
            if under("/tmp", mounts) is not True:
                problems.append("read_only, and /tmp is no tmpfs or volume")
        tokens = flag_value(argv, "--tokens-file") or env.get("TESSERA_TOKENS_FILE")
        if tokens and under(tokens, mounts) is None:
            problems.append(f"the tokens file {tokens} is on no volume")
        if sub in ("serve", "worker"):
            try:
                grace, lease = grace_and_lease(argv, env)
                stop = seconds(svc.get("stop_grace_period", "10s"))
                if not stop > grace + lease:
                    problems.append(f"stop_grace_period {stop:g}s is not above --grace {grace:g}s + --lease {lease:g}s")
            except ValueError as e:
                problems.append(str(e))
            if svc.get("restart", "no") == "no":
                problems.append("a long-running role without a restart policy")
        if sub == "serve":
            test = " ".join(command_list((svc.get("healthcheck") or {}).get("test")) or [])
            port = listen_port(argv, env)
            if "/health" not in test or str(port) not in test:
                problems.append(f"no healthcheck on /health, port {port}")
        check(f"service {name}: data dir, tokens file, healthcheck, stop grace", COMPOSE, problems)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    print(f"binary: {BIN}; Kubernetes versions: {' '.join(K8S_VERSIONS)}", flush=True)
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        check("binary", Path(BIN), ["not found or not executable: build it (cargo build -p tessera) or set TESSERA_BIN"])
        print(f"check-deploy: {passed} passed, {failed} failed")
        return 1
    docker = check_dockerfile()
    check_kubernetes(docker)
    check_compose(docker)
    print(f"check-deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
