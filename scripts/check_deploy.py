#!/usr/bin/env python3
"""Offline checks of the deployment files: the Dockerfile, docker-compose.yml,
deploy/kubernetes/, deploy/systemd/ and deploy/prometheus/alerts.yml.

Run by scripts/check-deploy.sh, which installs the tools this needs into a virtualenv and
builds the binary. Each check prints one line, `ok` or `FAIL` with every problem it found;
the exit code is 1 when any check failed. Nothing here needs Docker, a cluster, systemd
running or the network: what needs them is listed in the deployment notes as untested.
"""

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import promql_parser
import yaml
from dockerfile_parse import DockerfileParser

# The metrics the alert rules may use, with their labels (the contract of issue 12).
METRICS = {
    "leadlink_webhooks_total": {"source", "result"},
    "leadlink_jobs": {"status"},
    "leadlink_connect_requests_total": {"outcome"},
    "leadlink_api_calls_total": {"endpoint", "status"},
    "leadlink_api_call_duration_seconds": {"endpoint"},
    "leadlink_writebacks_total": {"target", "result"},
    "leadlink_account_remaining": {"account"},
    "leadlink_account_held": {"account"},
    "leadlink_outbox_oldest_seconds": set(),
    "leadlink_publish_duration_seconds": set(),
    "leadlink_api_key_paused": set(),
    "leadlink_writebacks_parked": set(),
}
HISTOGRAMS = {"leadlink_api_call_duration_seconds", "leadlink_publish_duration_seconds"}
# Label values that are a closed list: README "Statuses" and the writeback results.
LABEL_VALUES = {
    ("leadlink_jobs", "status"): {
        "queued", "held", "scheduled", "retrying", "paused", "shadowed", "sent",
        "already_connected", "invitation_pending", "profile_not_found", "failed", "cancelled",
        "invalid",
    },
    ("leadlink_writebacks_total", "result"): {"delivered", "failed", "parked", "superseded"},
}
# What the example rules are for: each needs a rule whose expression reads one of these.
ALERT_SUBJECTS = {
    "a paused API key": {"leadlink_api_key_paused"},
    "a held account": {"leadlink_account_held"},
    "parked writebacks": {"leadlink_writebacks_parked"},
    "an outbox that does not drain": {"leadlink_outbox_oldest_seconds"},
}
SEVERITIES = {"critical", "warning", "info"}
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL", re.I)
# leadlink's secrets whose names do not say so (README "Configuration", the secrets' table).
SECRET_URLS = {"LEADLINK_BROKER__URL", "LEADLINK_DATABASE__URL", "LEADLINK_WRITEBACK__CALLBACK__URL"}
SECRETS_PREFIX = "/run/secrets/"
# The default of worker.shutdown_timeout (README, [worker]).
DEFAULT_SHUTDOWN = 30.0


class Failed(Exception):
    """A check's problems, all of them, so one run shows everything to fix."""

    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


class Problems:
    def __init__(self):
        self.items = []

    def expect(self, condition, problem):
        if not condition:
            self.items.append(problem)
        return bool(condition)

    def raise_any(self):
        if self.items:
            raise Failed(self.items)


# --- small parsers -------------------------------------------------------------------------

DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(text):
    """A humantime/Prometheus duration ("30s", "1m30s", "500ms") in seconds."""
    text = str(text).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", "", text).strip():
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def port_of(listen):
    return int(str(listen).rsplit(":", 1)[1])


def url_port(url):
    return urlsplit(url).port


class ServiceConfig:
    """What the deployment files must agree with, read from deploy/leadlink.toml."""

    def __init__(self, path):
        self.path = path
        self.text = path.read_text()
        config = tomllib.loads(self.text)
        self.listen_port = port_of(config.get("server", {}).get("listen", "127.0.0.1:8080"))
        worker = config.get("worker", {})
        self.health_port = port_of(worker["health_listen"]) if "health_listen" in worker else None
        self.shutdown = seconds(worker.get("shutdown_timeout", "30s"))
        self.secret_paths = sorted(set(re.findall(r'"(' + SECRETS_PREFIX + r'[^"]+)"', self.text)))


def inline_secret(env_name):
    """An environment variable that would carry a secret itself rather than name its file."""
    return (bool(SECRET_NAME.search(env_name)) or env_name in SECRET_URLS) and not env_name.endswith("_FILE")


def run(command, env=None, timeout=120):
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def clean_env(extra=None):
    """No LEADLINK_* variable from the caller's shell leaks into a configuration check."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(extra or {})
    return env


def check_config(binary, config_text, env, mapping):
    """`leadlink check-config` on `config_text` with `mapping` (a path in the container →
    the file holding it here) applied; a secret path left unmapped is not mounted."""
    problems = []
    for path in set(re.findall(r'"(' + SECRETS_PREFIX + r'[^"]+)"', config_text)) | {
        v for v in env.values() if v.startswith(SECRETS_PREFIX)
    }:
        if path not in mapping:
            problems.append(f"{path} is named but not mounted")
    if problems:
        return problems
    for inside, here in mapping.items():
        config_text = config_text.replace(f'"{inside}"', json.dumps(str(here)))
    env = {k: str(mapping.get(v, v)) for k, v in env.items()}
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(config_text)
    try:
        command = [str(binary), "check-config"]
        if config_text:
            command += ["--config", f.name]
        result = run(command, env=clean_env(env))
    finally:
        os.unlink(f.name)
    if result.returncode != 0 or "configuration is valid" not in result.stdout:
        detail = " ".join((result.stdout + result.stderr).split())
        return [f"check-config refused it: {detail}"]
    return []


# --- Dockerfile ----------------------------------------------------------------------------

def check_dockerfile(repo, binary, _config):
    p = Problems()
    parser = DockerfileParser(path=str(repo / "Dockerfile"))
    instructions = [i for i in parser.structure if i["instruction"] != "COMMENT"]
    froms = [n for n, i in enumerate(instructions) if i["instruction"] == "FROM"]
    p.expect(len(froms) >= 2, f"{len(froms)} FROM stage(s); a build and a runtime stage expected")
    if not froms:
        p.raise_any()
    final = instructions[froms[-1]:]

    def of(name):
        return [i["value"] for i in final if i["instruction"] == name]

    users = of("USER")
    if p.expect(users, "the final stage sets no USER: it would run as root"):
        user = users[-1].split(":")[0]
        p.expect(user.isdigit(), f"USER {user} is not numeric (runAsNonRoot cannot verify a name)")
        p.expect(user not in ("0", "root"), f"the final stage runs as {user}")

    healthchecks = of("HEALTHCHECK")
    if p.expect(healthchecks, "the final stage has no HEALTHCHECK"):
        words = healthchecks[-1].split()
        command = healthchecks[-1][healthchecks[-1].find("CMD") + 3:].strip() if "CMD" in words else ""
        try:
            argv = json.loads(command) if command.startswith("[") else shlex.split(command)
        except ValueError:
            argv = []
        p.expect(
            len(argv) >= 2 and argv[0].endswith("leadlink") and argv[1] == "healthcheck",
            f"HEALTHCHECK does not run `leadlink healthcheck`: {command!r}",
        )
    help_run = run([str(binary), "healthcheck", "--help"])
    p.expect(help_run.returncode == 0, "the binary has no `healthcheck` command")

    for i in instructions:
        if i["instruction"] not in ("ENV", "ARG"):
            continue
        for word in shlex.split(i["value"]):
            name, _, value = word.partition("=")
            p.expect(
                not (SECRET_NAME.search(name) and value),
                f"line {i['startline'] + 1}: {i['instruction']} {name} holds a secret-looking value",
            )
    for copy in of("COPY") + of("ADD"):
        p.expect("--from=" in copy, f"the final stage copies from the build context: {copy!r}")
    entrypoints = of("ENTRYPOINT")
    copied = [c.split()[-1] for c in of("COPY")]
    p.expect(
        entrypoints and json.loads(entrypoints[-1])[0] in copied,
        "the ENTRYPOINT is not the binary copied into the final stage",
    )
    p.raise_any()
    return f"{len(froms)} stages, USER {users[-1]}, HEALTHCHECK runs leadlink healthcheck"


def check_dockerignore(repo, *_):
    p = Problems()
    patterns = [
        line.strip().rstrip("/")
        for line in (repo / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ["target", ".git", "fuzz/artifacts", "fuzz/corpus", "fuzz/target",
                   "deploy/compose/secrets", "deploy/compose/secrets.example"]:
        p.expect(needed in patterns, f"{needed}/ is not ignored")
    # What the build stage needs must stay in the context.
    for kept in ["Cargo.toml", "Cargo.lock", "build.rs", "src", "migrations", "benches"]:
        p.expect(
            not any(fnmatch.fnmatch(kept, pattern) for pattern in patterns),
            f"{kept} is ignored but the build needs it",
        )
    p.raise_any()
    return f"{len(patterns)} patterns; build inputs kept"


# --- docker-compose.yml --------------------------------------------------------------------

def interpolate(value, where, p):
    """Compose's ${VAR:-default} with every variable unset: the file's defaults must work."""

    def replace(match):
        name, default = match.group(1), match.group(3)
        if default is None:
            p.expect(False, f"{where}: ${{{name}}} has no default")
            return ""
        return default

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}", replace, value)


def compose_env(service, name, p):
    env = service.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v), f"{name}.environment.{k}", p) for k, v in env.items()}


def healthcheck_argv(service):
    test = (service.get("healthcheck") or {}).get("test") or []
    if isinstance(test, str):
        return shlex.split(test)
    return test[1:] if test and test[0] in ("CMD", "CMD-SHELL") else test


def option(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else None


def check_compose_schema(repo, *_):
    tool = Path(sys.executable).with_name("check-jsonschema")
    result = run([str(tool), "--builtin-schema", "vendor.compose-spec", str(repo / "docker-compose.yml")])
    if result.returncode != 0:
        raise Failed([" ".join((result.stdout + result.stderr).split())])
    return "valid against the Compose specification (check-jsonschema vendor.compose-spec)"


class Compose:
    def __init__(self, repo, p):
        self.repo = repo
        self.raw = (repo / "docker-compose.yml").read_text()
        self.doc = yaml.safe_load(self.raw)
        self.services = self.doc.get("services", {})
        self.secret_files = {}
        for name, secret in (self.doc.get("secrets") or {}).items():
            if p.expect("file" in secret, f"secret {name} is not a file"):
                path = repo / interpolate(secret["file"], f"secrets.{name}", p)
                p.expect(path.is_file(), f"secret {name}: {path} does not exist")
                self.secret_files[name] = path

    def mounts(self, service):
        """The service's secrets: the path inside the container → the file here."""
        mounted = {}
        for entry in service.get("secrets", []) or []:
            source = entry if isinstance(entry, str) else entry["source"]
            target = source if isinstance(entry, str) else entry.get("target", source)
            if not target.startswith("/"):
                target = SECRETS_PREFIX + target
            mounted[target] = self.secret_files.get(source)
        return mounted

    def config_mount(self, service):
        """The (file here, path inside) of the leadlink.toml bind mount."""
        for volume in service.get("volumes", []) or []:
            parts = volume.split(":") if isinstance(volume, str) else [volume["source"], volume["target"]]
            if parts[0].startswith(".") and parts[1].endswith(".toml"):
                return self.repo / parts[0], parts[1]
        return None, None


def check_compose(repo, binary, config):
    p = Problems()
    compose = Compose(repo, p)
    services = compose.services
    for name in ["postgres", "rabbitmq", "ingest", "worker", "sim"]:
        p.expect(name in services, f"no service {name}")
    p.raise_any()
    named_volumes = set((compose.doc.get("volumes") or {}).keys())
    for name, data_dir in [("postgres", "/var/lib/postgresql/data"), ("rabbitmq", "/var/lib/rabbitmq")]:
        service = services[name]
        p.expect(healthcheck_argv(service), f"{name} has no health check")
        p.expect(
            any(v.startswith(tuple(f"{n}:" for n in named_volumes)) and v.split(":")[1] == data_dir
                for v in service.get("volumes", [])),
            f"{name} keeps {data_dir} in no named volume",
        )
    for name in services:
        p.expect(
            ("profiles" in services[name]) == (name == "sim"),
            f"{name}: only the simulator is behind a profile",
        )
    p.expect(services["sim"].get("profiles") == ["sim"], "the simulator's profile is not `sim`")

    for name, role, port in [("ingest", "ingest", config.listen_port), ("worker", "worker", config.health_port)]:
        service = services[name]
        build = service.get("build") or {}
        p.expect(build.get("context") == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile",
                 f"{name} is not built from the Dockerfile")
        command = service.get("command") or []
        p.expect(command[:1] == [role], f"{name} does not run `leadlink {role}`")
        here, inside = compose.config_mount(service)
        p.expect(here is not None and here.resolve() == config.path.resolve(),
                 f"{name} does not mount deploy/leadlink.toml")
        p.expect(option(command, "--config") == inside, f"{name}: --config is not the mounted file {inside}")
        argv = healthcheck_argv(service)
        p.expect(argv[:2] and argv[0].endswith("leadlink") and argv[1] == "healthcheck",
                 f"{name}'s health check is not `leadlink healthcheck`")
        url = option(argv, "--url")
        p.expect(url and url_port(url) == port and urlsplit(url).path in ("/healthz", "/readyz"),
                 f"{name}'s health check {url} is not /healthz or /readyz on port {port}")
        grace = seconds(service.get("stop_grace_period", "10s"))
        p.expect(grace > config.shutdown,
                 f"{name}: stop_grace_period {grace:g}s is not longer than worker.shutdown_timeout {config.shutdown:g}s")
        depends = service.get("depends_on") or {}
        for dependency in ["postgres", "rabbitmq"]:
            p.expect((depends.get(dependency) or {}).get("condition") == "service_healthy",
                     f"{name} does not wait for {dependency} to be healthy")
        for key, value in compose_env(service, name, p).items():
            p.expect(key.startswith("LEADLINK_") and "__" in key, f"{name}: {key} is not a leadlink key")
            p.expect(not inline_secret(key), f"{name}: {key} puts a secret in the environment; mount it as a file")
        mounted = compose.mounts(service)
        for path in config.secret_paths:
            p.expect(path in mounted, f"{name}: {path} (named in leadlink.toml) is not mounted")
    ports = [str(published).rsplit(":", 1)[-1] for published in services["ingest"].get("ports", [])]
    p.expect(str(config.listen_port) in ports, f"ingest does not publish port {config.listen_port}")

    sim_command = services["sim"].get("command") or []
    sim_port = port_of(option(sim_command, "--listen") or ":0")
    p.expect(sim_command[:1] == ["sim"] and sim_port, "the simulator does not run `leadlink sim --listen`")
    sim_url = option(healthcheck_argv(services["sim"]), "--url")
    p.expect(sim_url and url_port(sim_url) == sim_port, "the simulator's health check is not on its port")
    # The try-it-out line in the file's comments must name the simulator where it listens.
    hints = re.findall(r"CONNECTSAFELY_BASE_URL=http://([\w-]+):(\d+)", compose.raw)
    p.expect(hints, "no comment says how to point leadlink at the simulator")
    for host, port in hints:
        p.expect(host == "sim" and int(port) == sim_port, f"the comment's simulator URL {host}:{port} is wrong")

    # The bundled PostgreSQL and RabbitMQ must accept what leadlink's URLs say.
    secrets = {name: path.read_text().strip() for name, path in compose.secret_files.items()}
    database = urlsplit(secrets.get("database-url", ""))
    pg_env = compose_env(services["postgres"], "postgres", p)
    p.expect(database.hostname == "postgres", "database-url does not name the postgres service")
    p.expect(database.username == pg_env.get("POSTGRES_USER"), "database-url's user is not POSTGRES_USER")
    p.expect(database.path.lstrip("/") == pg_env.get("POSTGRES_DB"), "database-url's database is not POSTGRES_DB")
    p.expect(database.password == secrets.get("postgres-password"),
             "database-url's password is not the postgres-password secret")
    broker = urlsplit(secrets.get("broker-url", ""))
    rabbit = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition("=") for line in secrets.get("rabbitmq-conf", "").splitlines())
        if not k.strip().startswith("#") and v
    )
    p.expect(broker.hostname == "rabbitmq", "broker-url does not name the rabbitmq service")
    p.expect((broker.username, broker.password) == (rabbit.get("default_user"), rabbit.get("default_pass")),
             "broker-url's user and password are not rabbitmq.conf's default_user and default_pass")
    p.raise_any()
    return f"{len(services)} services; ports, grace periods, secrets and credentials agree"


def check_compose_config(repo, binary, config):
    p = Problems()
    compose = Compose(repo, p)
    for name in ["ingest", "worker"]:
        service = compose.services[name]
        here, _ = compose.config_mount(service)
        for problem in check_config(binary, here.read_text(), compose_env(service, name, p), compose.mounts(service)):
            p.expect(False, f"{name}: {problem}")
    p.raise_any()
    return "ingest and worker: configuration is valid (leadlink check-config, compose env and secrets)"


# --- deploy/kubernetes/ --------------------------------------------------------------------

def kubernetes_files(repo):
    folder = repo / "deploy" / "kubernetes"
    return sorted(f for f in folder.glob("*.yaml") if f.name != "kustomization.yaml")


# The oldest Kubernetes the manifests are for (preStop's sleep action is on by default from
# 1.30) and the newest schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]


def check_kubernetes_schema(repo, *_):
    tool = Path(sys.executable).with_name("kubernetes-validate")
    files = kubernetes_files(repo)
    problems = []
    for version in KUBERNETES_VERSIONS:
        result = run([str(tool), "--strict", "--quiet", "-k", version, *map(str, files)])
        # --quiet prints warnings and failures only; a warning is a document left unchecked
        # (an unknown kind or apiVersion), so it fails too.
        said = list(dict.fromkeys(line for line in (result.stdout + result.stderr).splitlines() if line.strip()))
        if result.returncode != 0 or said:
            problems += said or [f"kubernetes-validate -k {version} exited {result.returncode}"]
    if problems:
        raise Failed(problems)
    return (f"{len(files)} files valid against Kubernetes {' and '.join(KUBERNETES_VERSIONS)}"
            " (kubernetes-validate --strict)")


class Manifests:
    def __init__(self, repo, p):
        self.by_kind = {}
        for path in kubernetes_files(repo):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc is None:
                    continue
                if p.expect("kind" in doc and "metadata" in doc, f"{path.name}: a document without kind/metadata"):
                    self.by_kind.setdefault(doc["kind"], {})[doc["metadata"].get("name")] = doc

    def one(self, kind, name, p):
        found = self.by_kind.get(kind, {}).get(name)
        p.expect(found is not None, f"no {kind} {name}")
        return found


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def named_port(container, port):
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == port), None)


def pod_mounts(deployment, manifests):
    """Paths inside the container → (ConfigMap or Secret, key), from the volume mounts."""
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    files = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "configMap" in volume:
            source = manifests.by_kind.get("ConfigMap", {}).get(volume["configMap"]["name"])
            keys = (source or {}).get("data", {})
        elif "secret" in volume:
            source = manifests.by_kind.get("Secret", {}).get(volume["secret"]["secretName"])
            keys = (source or {}).get("stringData", {})
        else:
            continue
        for key, value in keys.items():
            files[f"{mount['mountPath'].rstrip('/')}/{key}"] = value
    return files


def dockerfile_uid(repo):
    parser = DockerfileParser(path=str(repo / "Dockerfile"))
    users = [i["value"] for i in parser.structure if i["instruction"] == "USER"]
    return int(users[-1].split(":")[0]) if users and users[-1].split(":")[0].isdigit() else None


def check_kubernetes(repo, binary, config):
    p = Problems()
    m = Manifests(repo, p)
    configmap = m.one("ConfigMap", "leadlink-config", p)
    secret = m.one("Secret", "leadlink-secrets", p)
    ingest = m.one("Deployment", "leadlink-ingest", p)
    worker = m.one("Deployment", "leadlink-worker", p)
    service = m.one("Service", "leadlink-ingest", p)
    p.expect(len(m.by_kind.get("PodDisruptionBudget", {})) >= 2, "a PodDisruptionBudget for ingest and worker expected")
    p.raise_any()

    p.expect(configmap.get("data", {}).get("leadlink.toml") == config.text,
             "the ConfigMap's leadlink.toml is not an exact copy of deploy/leadlink.toml")
    p.expect("data" not in secret and secret.get("stringData"), "the example Secret should use stringData")
    for key, value in (secret.get("stringData") or {}).items():
        p.expect(re.search(r"REPLACE-ME|EXAMPLE|RVhBTVBMRS1PTkxZ", value),
                 f"the example Secret's {key} does not look like a placeholder")

    uid = dockerfile_uid(repo)
    for deployment, role, port in [(ingest, "ingest", config.listen_port), (worker, "worker", config.health_port)]:
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        p.expect(matches(spec["selector"].get("matchLabels"), labels), f"{name}: the selector misses the pod labels")
        container = pod["containers"][0]
        args = container.get("args") or []
        p.expect(args[:1] == [role], f"{name} does not run `leadlink {role}`")
        files = pod_mounts(deployment, m)
        p.expect(option(args, "--config") in files and files.get(option(args, "--config")) == config.text,
                 f"{name}: --config is not the ConfigMap's leadlink.toml")
        for path in config.secret_paths:
            p.expect(path in files, f"{name}: {path} (named in leadlink.toml) is in no mounted Secret key")
        for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", None)]:
            get = (container.get(probe) or {}).get("httpGet") or {}
            if path is None and not get:
                continue
            p.expect(get.get("path") == (path or get.get("path")) and named_port(container, get.get("port")) == port,
                     f"{name}: {probe} is not {path or 'a path'} on port {port}")
        annotations = spec["template"]["metadata"].get("annotations", {})
        p.expect(annotations.get("prometheus.io/scrape") == "true"
                 and annotations.get("prometheus.io/port") == str(port)
                 and annotations.get("prometheus.io/path") == "/metrics",
                 f"{name}: the scrape annotations are not /metrics on port {port}")
        for variable in container.get("env", []):
            p.expect("value" not in variable or not inline_secret(variable["name"]),
                     f"{name}: {variable['name']} has a secret as its value; use the Secret's files")
        resources = container.get("resources", {})
        p.expect({"cpu", "memory"} <= set(resources.get("requests", {})), f"{name}: no cpu and memory requests")
        p.expect("memory" in resources.get("limits", {}), f"{name}: no memory limit")
        pod_security = pod.get("securityContext", {})
        security = container.get("securityContext", {})
        p.expect(security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, f"{name}: runAsNonRoot is not set")
        p.expect(security.get("runAsUser", pod_security.get("runAsUser")) == uid,
                 f"{name}: runAsUser is not the image's USER {uid}")
        p.expect(security.get("readOnlyRootFilesystem") is True, f"{name}: the root filesystem is writable")
        p.expect(security.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation is allowed")
        p.expect("ALL" in security.get("capabilities", {}).get("drop", []), f"{name}: capabilities are not dropped")
        pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        p.expect(grace > config.shutdown + pre_stop,
                 f"{name}: terminationGracePeriodSeconds {grace} is not longer than preStop {pre_stop}s"
                 f" + worker.shutdown_timeout {config.shutdown:g}s")
        budgets = [b for b in m.by_kind.get("PodDisruptionBudget", {}).values()
                   if matches(b["spec"]["selector"].get("matchLabels"), labels)]
        if p.expect(len(budgets) == 1, f"{name}: {len(budgets)} PodDisruptionBudgets select it, one expected"):
            minimum = budgets[0]["spec"].get("minAvailable")
            if isinstance(minimum, int):
                p.expect(minimum < spec.get("replicas", 1), f"{name}: minAvailable {minimum} blocks every drain")
    p.expect(ingest["spec"].get("replicas", 1) >= 2, "ingest should run at least 2 replicas")

    ingest_labels = ingest["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"].get("selector")
    p.expect(matches(selector, ingest_labels) and not matches(selector, worker_labels),
             "the Service does not select ingest pods only")
    for service_port in service["spec"].get("ports", []):
        target = named_port(ingest["spec"]["template"]["spec"]["containers"][0], service_port.get("targetPort"))
        p.expect(target == config.listen_port, f"the Service's targetPort is not server.listen's {config.listen_port}")

    kustomization = yaml.safe_load((repo / "deploy" / "kubernetes" / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    expected = {f.name for f in kubernetes_files(repo)} - {"secret.example.yaml"}
    p.expect(listed == expected, f"kustomization.yaml lists {sorted(listed)}, expected {sorted(expected)}")
    p.raise_any()
    kinds = sorted(f"{kind}×{len(v)}" for kind, v in m.by_kind.items())
    return f"{', '.join(kinds)}; probes, ports, grace periods and mounts agree with leadlink.toml"


def check_kubernetes_config(repo, binary, config):
    p = Problems()
    m = Manifests(repo, p)
    with tempfile.TemporaryDirectory() as tmp:
        for deployment in m.by_kind.get("Deployment", {}).values():
            name = deployment["metadata"]["name"]
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            files = pod_mounts(deployment, m)
            mapping = {}
            for n, (inside, content) in enumerate(files.items()):
                here = Path(tmp) / f"{name}-{n}"
                here.write_text(content)
                mapping[inside] = here
            text = files.get(option(container.get("args") or [], "--config"), "")
            env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
            for problem in check_config(binary, text, env, mapping):
                p.expect(False, f"{name}: {problem}")
    p.raise_any()
    return "ingest and worker: configuration is valid (leadlink check-config, ConfigMap and example Secret)"


# --- deploy/systemd/ -----------------------------------------------------------------------

def unit_directives(path):
    directives = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            directives.append((key.strip(), value.strip()))
    return directives


def check_systemd(repo, binary, config):
    p = Problems()
    unit = repo / "deploy" / "systemd" / "leadlink.service"
    directives = unit_directives(unit)
    values = {}
    for key, value in directives:
        values.setdefault(key, []).append(value)
    first = lambda key: (values.get(key) or [None])[0]
    for key, value in [("DynamicUser", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"), ("CapabilityBoundingSet", ""),
                       ("StateDirectory", "leadlink"), ("Restart", "on-failure"),
                       ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX")]:
        p.expect(first(key) == value, f"{key}={first(key)}, expected {key}={value}")
    p.expect("@system-service" in (values.get("SystemCallFilter") or []), "SystemCallFilter=@system-service is missing")
    exec_start = shlex.split(first("ExecStart") or "")
    p.expect(exec_start[:1] and exec_start[0].startswith("/"), "ExecStart's binary is not an absolute path")
    p.expect(exec_start[1:2] == ["serve"] and option(exec_start, "--config") == "/etc/leadlink/leadlink.toml",
             "ExecStart does not run `leadlink serve --config /etc/leadlink/leadlink.toml`")
    # The install steps in the unit's comments put the binary where ExecStart looks for it.
    installs = re.findall(r"install -m 0755 target/release/leadlink (\S+)", unit.read_text())
    p.expect(installs and all(i == exec_start[0] for i in installs),
             f"the unit's install steps put the binary at {installs}, ExecStart runs {exec_start[:1]}")
    stop = seconds(first("TimeoutStopSec") or "90s")
    shutdown = max(DEFAULT_SHUTDOWN, config.shutdown)
    p.expect(stop > shutdown, f"TimeoutStopSec {stop:g}s is not longer than worker.shutdown_timeout {shutdown:g}s")
    credentials = {c.split(":", 1)[0] for c in values.get("LoadCredential", [])}
    environment = dict(e.split("=", 1) for e in values.get("Environment", []))
    named = {v[len("%d/"):] for k, v in environment.items() if v.startswith("%d/")}
    p.expect(credentials, "no LoadCredential= for the secrets")
    p.expect(named == credentials, f"credentials loaded {sorted(credentials)} but used {sorted(named)}")
    for key, value in environment.items():
        p.expect(not inline_secret(key), f"{key} puts a secret in the unit; load it as a credential")
    p.raise_any()

    # The unit's environment must be keys leadlink knows, with its credentials as files.
    with tempfile.TemporaryDirectory() as credentials_dir:
        mapping = {}
        placeholders = {"events-secrets": "whsec_RVhBTVBMRS1PTkxZLXJlcGxhY2Utd2l0aC15b3VyLXNlY3JldA=="}
        for name in credentials:
            here = Path(credentials_dir) / name
            here.write_text(placeholders.get(name, "placeholder"))
            mapping[f"%d/{name}"] = here
        env = {k: str(mapping.get(v, v)) for k, v in environment.items()}
        for problem in check_config(binary, "", env, {}):
            p.expect(False, f"its environment: {problem}")
    p.raise_any()

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return "directives and environment ok; systemd-analyze not available, skipped"
    # `verify` wants ExecStart's binary to exist, and the units the unit refers to. An
    # image root holds the unit at its installed path, the binary just built at ExecStart's
    # path and this machine's own units, so the unit is verified as written.
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        installed = root / "etc/systemd/system/leadlink.service"
        installed.parent.mkdir(parents=True)
        shutil.copy(unit, installed)
        target = root / exec_start[0].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(binary, target)
        system_units = Path("/usr/lib/systemd/system")
        if system_units.is_dir():
            shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
        result = run([analyze, "verify", f"--root={root}", "/etc/systemd/system/leadlink.service"])
        # verify exits 0 on directives it ignores: any word from it is a problem.
        said = " ".join((result.stdout + result.stderr).split())
        if result.returncode != 0 or said:
            raise Failed([f"systemd-analyze verify: {said or f'exit {result.returncode}'}"])
        security = run([analyze, "security", "--offline=true", f"--root={root}", "leadlink.service"])
        score = re.search(r"Overall exposure level for leadlink\.service: ([\d.]+ \w+)", security.stdout)
    exposure = f"; systemd-analyze security: {score.group(1)}" if score else ""
    return f"directives and environment ok; systemd-analyze verify clean{exposure}"


# --- deploy/prometheus/alerts.yml ----------------------------------------------------------

def selectors(expr):
    """The expression's vector selectors, and per aggregation its modifier (None: no labels
    survive; else (By or Without, labels))."""
    found, aggregations = [], []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        if isinstance(node, promql_parser.AggregateExpr):
            modifier = node.modifier
            aggregations.append(None if modifier is None else (modifier.type, set(modifier.labels)))
        return True

    promql_parser.walk(expr, visit)
    return found, aggregations


def surviving(labels, aggregations):
    """The labels an alert still carries after every aggregation of its expression."""
    for aggregation in aggregations:
        if aggregation is None:
            labels = set()
        elif aggregation[0] == promql_parser.AggModifierType.By:
            labels = labels & aggregation[1]
        else:
            labels = labels - aggregation[1]
    return labels


def metric_labels(name):
    if name in METRICS:
        return name, METRICS[name]
    for suffix, extra in [("_bucket", {"le"}), ("_sum", set()), ("_count", set())]:
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base in HISTOGRAMS:
            return base, METRICS[base] | extra
    return None, None


def check_alerts(repo, *_):
    p = Problems()
    doc = yaml.safe_load((repo / "deploy" / "prometheus" / "alerts.yml").read_text())
    p.expect(isinstance(doc, dict) and set(doc) == {"groups"}, "the file's only key must be `groups`")
    p.raise_any()
    names, used, count = set(), set(), 0
    for group in doc["groups"]:
        p.expect(group.get("name") and isinstance(group.get("rules"), list), "a group without name or rules")
        for rule in group.get("rules", []):
            count += 1
            alert = rule.get("alert", "?")
            p.expect(set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"},
                     f"{alert}: unknown keys {sorted(set(rule) - {'alert', 'expr', 'for', 'labels', 'annotations'})}")
            p.expect(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", alert), f"{alert}: not a valid alert name")
            p.expect(alert not in names, f"{alert}: defined twice")
            names.add(alert)
            try:
                seconds(rule.get("for", ""))
            except ValueError:
                p.expect(False, f"{alert}: `for` is not a duration: {rule.get('for')!r}")
            p.expect((rule.get("labels") or {}).get("severity") in SEVERITIES,
                     f"{alert}: labels.severity is not one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations") or {}
            for key in ["summary", "description"]:
                p.expect(str(annotations.get(key, "")).strip(), f"{alert}: no annotations.{key}")
            try:
                expr = promql_parser.parse(rule.get("expr", ""))
            except ValueError as e:
                p.expect(False, f"{alert}: expr does not parse: {e}")
                continue
            found, aggregations = selectors(expr)
            kept = set()
            for selector in found:
                base, labels = metric_labels(selector.name)
                if not p.expect(base, f"{alert}: {selector.name} is not a leadlink metric"):
                    continue
                used.add(base)
                kept |= labels
                for matcher in selector.matchers.matchers:
                    p.expect(matcher.name in labels, f"{alert}: {base} has no label {matcher.name}")
                    allowed = LABEL_VALUES.get((base, matcher.name))
                    if allowed and matcher.op == promql_parser.MatchOp.Equal:
                        p.expect(matcher.value in allowed, f"{alert}: {base}{{{matcher.name}}} is never {matcher.value!r}")
            for aggregation in filter(None, aggregations):
                p.expect(aggregation[1] <= kept, f"{alert}: groups by unknown labels {sorted(aggregation[1] - kept)}")
            left = surviving(kept, aggregations)
            for label in sorted(set(re.findall(r"\$labels\.(\w+)", json.dumps(annotations)))):
                p.expect(label in left, f"{alert}: annotations name $labels.{label}, which the expression drops")
    for subject, metrics in ALERT_SUBJECTS.items():
        p.expect(used & metrics, f"no rule alerts on {subject}")
    p.raise_any()
    return f"{count} rules; PromQL parses (promql-parser), metrics and labels are the contract's"


CHECKS = [
    ("dockerfile", check_dockerfile),
    ("dockerignore", check_dockerignore),
    ("compose-schema", check_compose_schema),
    ("compose", check_compose),
    ("compose-config", check_compose_config),
    ("kubernetes-schema", check_kubernetes_schema),
    ("kubernetes", check_kubernetes),
    ("kubernetes-config", check_kubernetes_config),
    ("systemd", check_systemd),
    ("alerts", check_alerts),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--binary", type=Path, required=True, help="the leadlink binary just built")
    args = parser.parse_args()
    repo = args.repo.resolve()
    config = ServiceConfig(repo / "deploy" / "leadlink.toml")
    failed = 0
    for name, check in CHECKS:
        try:
            print(f"ok    {name}: {check(repo, args.binary.resolve(), config)}", flush=True)
        except Failed as e:
            failed += 1
            print(f"FAIL  {name}: " + "; ".join(e.problems), flush=True)
        except Exception as e:  # a file so broken that a check could not even read it
            failed += 1
            print(f"FAIL  {name}: {type(e).__name__}: {e}", flush=True)
    print(f"deploy checks: {failed} of {len(CHECKS)} failed" if failed else f"deploy checks: all {len(CHECKS)} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
