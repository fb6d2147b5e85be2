"""Rendered node files: structure, security invariants, goldens, cloud-init schema."""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_init.__main__ import fake_render, main
from cloud_init.bastion import render_bastion
from cloud_init.common import NODE_SCRIPTS, NOVA_USER_DATA_LIMIT, TEMPLATES, nova_user_data, read_user_data
from cloud_init.endpoint import render_haproxy
from cloud_init.etcd import render_etcd_node
from cloud_init.patroni import render_patroni_node
from cloud_init.render import render_cluster
from lab.pki import LabCA
from machines.render import new_host_key
from pgha.firewall import METADATA_ADDRESS, METADATA_ADDRESS_V6
from pgha.secrets import (
    FAKE_CA,
    EtcdNodeSecrets,
    OvhApiCredentials,
    PatroniNodeSecrets,
    SshHostKey,
    fake_keypair,
    fake_passwords,
    scram_sha256,
)
from pgha.settings import load_stack_file
from pgha.target import Target

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
STACKS = ["dev", "prod"]
PG_SECRETS = PatroniNodeSecrets(FAKE_CA, fake_keypair("s"), fake_keypair("c"), fake_passwords())


def nodes(stack: str):
    s = load_stack_file(stack, ROOT)
    e = {n.name: EtcdNodeSecrets(FAKE_CA, fake_keypair(n.name)) for n in s.plan.etcd}
    p = {
        n.name: PatroniNodeSecrets(FAKE_CA, fake_keypair(f"{n.name}-s"), fake_keypair(f"{n.name}-c"), fake_passwords())
        for n in s.plan.patroni
    }
    return s, render_cluster(s, Target.vm(s), e, p)


def cloud_config(node) -> dict:
    assert node.user_data.startswith("#cloud-config\n")
    return yaml.safe_load(node.user_data)


@pytest.mark.parametrize("stack", STACKS)
def test_user_data_carries_every_file(stack: str) -> None:
    _, rendered = nodes(stack)
    assert [n.role for n in rendered].count("etcd") == 3
    assert [n.role for n in rendered].count("patroni") == 3
    for n in rendered:
        doc = cloud_config(n)
        written = {f["path"]: f for f in doc["write_files"]}
        assert set(written) == {f.path for f in n.files}
        for f in n.files:
            assert written[f.path]["content"] == f.content
            assert written[f.path]["permissions"] == f.mode
            if f.secret:
                assert f.mode == "0600", f.path


@pytest.mark.parametrize("stack", STACKS)
def test_etcd_config_is_tls_with_client_certs(stack: str) -> None:
    s, rendered = nodes(stack)
    etcd = [n for n in rendered if n.role == "etcd"]
    for i, n in enumerate(etcd):
        cfg = yaml.safe_load(n.file("/etcd.yml").content)
        assert cfg["name"] == f"etcd{i + 1}"
        for side in ("client-transport-security", "peer-transport-security"):
            assert cfg[side]["client-cert-auth"] is True
            assert cfg[side]["trusted-ca-file"].endswith("ca.crt")
        assert cfg["listen-client-urls"] == f"https://{s.plan.etcd[i].address}:2379"
        assert cfg["initial-cluster"] == ",".join(
            f"etcd{j + 1}=https://{ip}:2380" for j, ip in enumerate(s.plan.addresses("etcd"))
        )
        assert cfg["enable-v2"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_patroni_config_invariants(stack: str) -> None:
    s, rendered = nodes(stack)
    for i, n in enumerate([n for n in rendered if n.role == "patroni"]):
        cfg = yaml.safe_load(n.file("/patroni.yml").content)
        dcs = cfg["bootstrap"]["dcs"]
        assert dcs["failsafe_mode"] is True
        assert dcs["postgresql"]["use_pg_rewind"] is True
        assert "data-checksums" in cfg["bootstrap"]["initdb"]
        assert dcs["synchronous_mode"] is s.patroni.synchronous_mode
        assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
        assert cfg["etcd3"]["protocol"] == "https"
        assert cfg["etcd3"]["cert"]
        assert cfg["etcd3"]["key"]
        assert cfg["etcd3"]["hosts"] == [f"{ip}:2379" for ip in s.plan.addresses("etcd")]
        assert cfg["restapi"]["authentication"]["password"] == fake_passwords().rest_api
        assert cfg["restapi"]["certfile"]
        assert cfg["restapi"]["keyfile"]
        assert cfg["postgresql"]["parameters"]["ssl"] == "on"
        assert cfg["postgresql"]["listen"] == f"{s.plan.patroni[i].address}:5432"
        assert cfg["watchdog"]["mode"] == s.patroni.watchdog
        assert cfg["postgresql"]["data_dir"].startswith("/var/lib/postgresql/")
        for role in ("replication", "rewind"):
            assert cfg["postgresql"]["authentication"][role]["sslmode"] == "verify-full"


@pytest.mark.parametrize("stack", STACKS)
def test_pg_hba_is_hostssl_scram_only(stack: str) -> None:
    s, rendered = nodes(stack)
    cfg = yaml.safe_load(next(n for n in rendered if n.role == "patroni").file("/patroni.yml").content)
    hba = cfg["postgresql"]["pg_hba"]
    for line in hba:
        f = line.split()
        assert not re.search(r"\b(trust|md5|password)\b", line), line
        if f[0] == "local":
            assert f[-2:] in (["peer", "map=pgha"], ["peer", "map=pgha-monitor"]) or f[-1] == "peer", line
        elif f[-1] != "reject":
            assert f[0] == "hostssl", line
            assert f[-1] == "scram-sha-256", line
            assert f[3] in (s.plan.cidr, *s.patroni.app_cidrs), line
    repl = [line for line in hba if " replication " in f" {line} " and line.startswith("hostssl")]
    assert repl == [f"hostssl replication replicator {s.plan.cidr} scram-sha-256"]
    assert not [
        line
        for line in hba
        if line.startswith("hostssl") and line.split()[2] == "replicator" and line.split()[1] != "replication"
    ]
    assert not [line for line in hba if line.startswith("hostssl") and line.split()[2] == "postgres"], (
        "superuser over the network"
    )
    assert hba[-2:] == ["host all all 0.0.0.0/0 reject", "host all all ::/0 reject"]


def test_app_password_only_as_scram_verifier() -> None:
    _, rendered = nodes("dev")
    for n in rendered:
        for f in n.files:
            assert fake_passwords().app not in f.content, f.path
    sql = next(n for n in rendered if n.role == "patroni").file("/bootstrap.sql").content
    assert scram_sha256("app", fake_passwords().app) in sql


def test_scram_verifier_matches_postgres_format() -> None:
    v = scram_sha256("app", "secret")
    assert re.fullmatch(r"SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}", v)
    assert v == scram_sha256("app", "secret")
    assert v != scram_sha256("app", "other")


@pytest.mark.parametrize("stack", STACKS)
def test_patroni_waits_for_etcd_and_watchdog_on_vms(stack: str) -> None:
    _, rendered = nodes(stack)
    pg = next(n for n in rendered if n.role == "patroni")
    unit = pg.file("pgha-patroni.service").content
    assert re.search(r"^ExecStartPre=/usr/local/sbin/pgha-check-etcd .*--reachable", unit, re.MULTILINE)
    assert "softdog" in pg.file("/etc/modules-load.d/softdog.conf").content
    doc = cloud_config(pg)
    assert doc["mounts"][0][1] == "/var/lib/postgresql"
    assert doc["fs_setup"][0]["overwrite"] is False
    assert doc["runcmd"][-2:] == [
        ["systemctl", "enable", "pgha-patroni.service"],
        ["systemctl", "start", "--no-block", "pgha-patroni.service"],
    ]


def test_patroni_pinned_same_as_lab() -> None:
    _, rendered = nodes("dev")
    pg = next(n for n in rendered if n.role == "patroni")
    pinned = (ROOT / "cloud_init" / "patroni-requirements.txt").read_text()
    assert re.search(r"^patroni\[etcd3\]==\d+\.\d+\.\d+$", pinned, re.MULTILINE)
    assert pg.file("/patroni-requirements.txt").content == pinned
    assert "patroni-requirements.txt" in (ROOT / "scripts" / "setup.sh").read_text()


@pytest.mark.parametrize("stack", STACKS)
def test_host_firewall_never_opens_cluster_ports_to_the_world(stack: str) -> None:
    s, rendered = nodes(stack)
    for n in rendered:
        nft = n.file("/etc/nftables.conf").content
        assert "policy drop" in nft
        assert "0.0.0.0/0" not in nft
        if n.role == "etcd":
            assert re.search(
                r"ip saddr \{ " + ", ".join(map(re.escape, s.plan.addresses("etcd"))) + r" \} tcp dport 2380 accept",
                nft,
            )


@pytest.mark.parametrize("stack", STACKS)
def test_host_firewall_keeps_the_metadata_service_for_root(stack: str) -> None:
    """User-data (keys, passwords) is readable at the metadata address: only root may connect."""
    _, rendered = nodes(stack)
    for n in rendered:
        nft = n.file("/etc/nftables.conf").content
        output = nft.split("chain output {", 1)[1]
        assert f"meta skuid != 0 ip daddr {METADATA_ADDRESS} reject" in output, n.name
        assert f"meta skuid != 0 ip6 daddr {METADATA_ADDRESS_V6} reject" in output, n.name
    template = (TEMPLATES / "common" / "nftables.conf.j2").read_text()
    assert METADATA_ADDRESS not in template
    assert METADATA_ADDRESS_V6 not in template


def test_haproxy_checks_patroni_endpoints() -> None:
    s = load_stack_file("dev", ROOT)
    cfg = render_haproxy(s, Target.vm(s))
    assert "uri /primary" in cfg
    assert "uri /replica" in cfg
    assert "on-marked-down shutdown-sessions" in cfg
    for ip in s.plan.addresses("patroni"):
        assert f"{ip}:5432 check port 8008" in cfg


def test_templates_have_no_defaults_or_is_defined() -> None:
    for t in TEMPLATES.rglob("*.j2"):
        text = t.read_text()
        assert "default(" not in text, t
        assert "is defined" not in text, t
        first = text.splitlines()[1] if text.startswith("#!") else text.splitlines()[0]
        assert first.startswith(("#", "--", ";")), f"{t}: must start with a comment saying what it produces"


def test_render_is_pure_no_pulumi_import() -> None:
    for f in (ROOT / "cloud_init").rglob("*.py"):
        text = f.read_text()
        assert "import pulumi" not in text, f
        assert "from pulumi" not in text, f


@pytest.mark.parametrize("stack", STACKS)
def test_golden_renders_are_current(stack: str) -> None:
    files = fake_render(load_stack_file(stack, ROOT))
    golden = GOLDEN / stack
    on_disk = {str(p.relative_to(golden)): p.read_text() for p in golden.rglob("*") if p.is_file()}
    assert set(on_disk) == set(files), "golden file set changed: run make golden and review the diff"
    for rel, content in files.items():
        assert on_disk[rel] == content, f"tests/golden/{stack}/{rel} is stale: run make golden and review the diff"


def test_render_command_with_broken_stack_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["pgha:etcd"]["members"] = 4
    doc["config"]["pgha:patroni"]["ttl"] = 10
    doc["config"]["pgha:network"]["cidr"] = "8.8.8.0/24"
    (root / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert main(["render", "--stack", "dev", "--out", str(out), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    for path in ("etcd.members", "patroni.ttl", "network.cidr"):
        assert path in err
    assert not out.exists()


def test_check_json_lists_every_member() -> None:
    _, rendered = nodes("prod")
    pg = next(n for n in rendered if n.role == "patroni")
    check = json.loads(pg.file("/check.json").content)
    assert check["etcd"]["members"] == ["etcd1", "etcd2", "etcd3"]
    assert check["patroni"]["members"] == ["pg1", "pg2", "pg3"]
    assert check["patroni"]["synchronous_mode"] is True


def test_replacement_etcd_member_joins_existing_cluster() -> None:
    s = load_stack_file("dev", ROOT)
    sec = EtcdNodeSecrets(FAKE_CA, fake_keypair("e"))
    t, node = Target.vm(s), s.plan.etcd[1]

    assert yaml.safe_load(render_etcd_node(s, t, node, sec).file("/etcd.yml").content)["initial-cluster-state"] == "new"
    assert (
        yaml.safe_load(render_etcd_node(s, t, node, sec, cluster_state="existing").file("/etcd.yml").content)[
            "initial-cluster-state"
        ]
        == "existing"
    )
    with pytest.raises(ValueError, match="cluster_state must be"):
        render_etcd_node(s, t, node, sec, cluster_state="bogus")


def test_bastion_has_keys_and_no_password_login() -> None:
    s = load_stack_file("prod", ROOT)
    doc = yaml.safe_load(render_bastion(s))
    assert doc["ssh_authorized_keys"] == list(s.access.ssh_public_keys)
    assert doc["ssh_pwauth"] is False


def test_node_scripts_are_installed_verbatim() -> None:
    """Programs that run on a node are Python files (linted, type-checked), not templates."""
    _, rendered = nodes("prod")
    for n in rendered:
        for name, source in (("pgha-check-etcd", "check_etcd.py"), ("pgha-check-patroni", "check_patroni.py")):
            if n.role == "etcd" and name == "pgha-check-patroni":
                continue
            assert n.file(f"/{name}").content == (NODE_SCRIPTS / source).read_text()
    assert not list(TEMPLATES.rglob("*.py.j2")), "a node program must live in cloud_init/node_scripts/"


def test_watchdog_rule_covers_both_device_nodes() -> None:
    """/dev/watchdog (misc subsystem) and /dev/watchdog0 (watchdog subsystem) both go to
    Patroni's user, and the rule is re-applied by name after softdog loads (found booting
    Debian 12: a subsystem-filtered trigger never reached /dev/watchdog)."""
    _, rendered = nodes("prod")
    pg = next(n for n in rendered if n.role == "patroni")
    rule = pg.file("/61-pgha-watchdog.rules").content.splitlines()[-1]
    pattern = re.search(r'KERNEL=="([^"]+)"', rule)
    assert pattern
    assert "SUBSYSTEM" not in rule
    for dev in ("watchdog", "watchdog0"):
        assert fnmatch.fnmatchcase(dev, pattern.group(1)), dev
    runcmd = cloud_config(pg)["runcmd"]
    triggers = [c for c in runcmd if c[:2] == ["udevadm", "trigger"]]
    assert triggers
    assert all(not any(a.startswith("--subsystem-match") for a in c) for c in triggers)
    assert runcmd.index(["modprobe", "softdog"]) < runcmd.index(triggers[0])


def test_cloud_init_never_waits_for_peers() -> None:
    """etcd's first start lasts until quorum and Patroni's until etcd answers: cloud-init
    starts them without blocking (found booting Debian 12: runcmd hung on etcd)."""
    for stack in STACKS:
        _, rendered = nodes(stack)
        for n in rendered:
            for c in cloud_config(n)["runcmd"]:
                if c[0] == "systemctl" and any(u.startswith("pgha-") for u in c):
                    assert "--now" not in c, (n.name, c)
                    assert c[1] != "start" or "--no-block" in c, (n.name, c)
        etcd_unit = next(n for n in rendered if n.role == "etcd").file("pgha-etcd.service").content
        assert "TimeoutStartSec=infinity" in etcd_unit


def test_hostname_resolves_on_every_node() -> None:
    s, rendered = nodes("dev")
    for doc in [cloud_config(n) for n in rendered] + [yaml.safe_load(render_bastion(s))]:
        assert doc["manage_etc_hosts"] is True


def test_runcmd_stops_at_the_first_failure() -> None:
    """cloud-init runs runcmd as one script whose status is its last command's: set -eu
    first, so a failed modprobe, pip install or install -d fails the node visibly."""
    _, rendered = nodes("dev")
    for n in rendered:
        assert cloud_config(n)["runcmd"][0] == "set -eu", n.name


def test_watchdog_modprobe_must_succeed_only_when_required() -> None:
    for mode, expected in (("required", ["modprobe", "softdog"]), ("automatic", "modprobe softdog || true")):
        s = load_stack_file("dev", ROOT)
        s = dataclasses.replace(s, patroni=dataclasses.replace(s.patroni, watchdog=mode))
        node = render_patroni_node(s, Target.vm(s), s.plan.patroni[0], PG_SECRETS)
        assert expected in cloud_config(node)["runcmd"], mode


def test_data_volume_found_by_its_serial() -> None:
    """Nova sets a volume's virtio serial to the first 20 characters of its id."""
    s = load_stack_file("dev", ROOT)
    volume_id = "3f2b9c1e-5a7d-4e21-9b0c-8d6e4f1a2b3c"
    target = Target.vm(s, volume_ids={"pg2": volume_id})
    assert target.layout(s.plan.patroni[1]).data_device == "/dev/disk/by-id/virtio-3f2b9c1e-5a7d-4e21-9"
    doc = cloud_config(render_patroni_node(s, target, s.plan.patroni[1], PG_SECRETS))
    assert doc["fs_setup"][0]["device"] == "/dev/disk/by-id/virtio-3f2b9c1e-5a7d-4e21-9"
    assert doc["fs_setup"][0]["overwrite"] is False
    assert doc["mounts"][0][:2] == ["LABEL=pgdata", "/var/lib/postgresql"]
    check = json.loads(render_patroni_node(s, target, s.plan.patroni[1], PG_SECRETS).file("/check.json").content)
    assert check["patroni"]["data_mount"] == "/var/lib/postgresql"


def test_postgres_owns_the_parent_of_its_data_dir() -> None:
    """Patroni renames a failed data dir aside in its parent (found booting: root-owned
    /var/lib/postgresql/15 left a failed bootstrap stuck for good)."""
    _, rendered = nodes("dev")
    pg = next(n for n in rendered if n.role == "patroni")
    installs = [c for c in cloud_config(pg)["runcmd"] if isinstance(c, list) and c[:2] == ["install", "-d"]]
    dirs = [c[-1] for c in installs]
    assert dirs.index("/var/lib/postgresql/15") < dirs.index("/var/lib/postgresql/15/pgha")
    assert all(c[c.index("-o") + 1] == "postgres" for c in installs)


def load_node_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"node_script_{name}", NODE_SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_patroni_check_refuses_data_on_the_root_disk(tmp_path: Path) -> None:
    check = load_node_script("check_patroni")
    problem = check.data_volume_problem({"data_mount": str(tmp_path)})
    assert problem is not None
    assert "is not a mounted volume" in problem
    assert check.data_volume_problem({"data_mount": "/"}) is None
    assert check.data_volume_problem({"data_mount": None}) is None


@pytest.mark.parametrize("stack", STACKS)
def test_user_data_fits_nova_with_margin(stack: str) -> None:
    """Real key sizes (ECDSA P-256 like the stack's pulumi-tls keys), real password lengths,
    the DNS callback's credentials on: every node's user-data, as the stack hands it to
    Nova (gzip + base64, ``nova_user_data``), stays under 50 % of Nova's limit, and
    decompresses to exactly the rendered text. Measured when written: the largest (a
    Patroni node) is 48.3 kB as plain base64 (74 % of 65535) and 15.3 kB gzipped (23 %)."""
    s = load_stack_file(stack, ROOT)
    ca = LabCA("size")
    pw = fake_passwords()
    long_pw = type(pw)(**dict.fromkeys(vars(pw), "x" * 32))
    creds = OvhApiCredentials("a" * 16, "s" * 32, "c" * 32)
    dns = dataclasses.replace(s.endpoint.dns, enabled=True, zone="example.com", primary_record=True)
    s = dataclasses.replace(s, endpoint=dataclasses.replace(s.endpoint, dns=dns))
    host_key = new_host_key()  # ed25519, OpenSSH formats, as the stack generates them
    etcd = {n.name: EtcdNodeSecrets(ca.pem, ca.issue(n.name, [n.address]), host_key) for n in s.plan.etcd}
    pg = {
        n.name: PatroniNodeSecrets(
            ca.pem, ca.issue(n.name, [n.address]), ca.issue(n.name, [n.address]), long_pw, creds, host_key
        )
        for n in s.plan.patroni
    }
    rendered = render_cluster(s, Target.vm(s), etcd, pg)
    for n in rendered:
        assert read_user_data(nova_user_data(n.user_data)) == n.user_data
    sizes = {n.name: len(nova_user_data(n.user_data)) for n in rendered}
    worst = max(sizes.values())
    assert worst < 0.5 * NOVA_USER_DATA_LIMIT, f"{sizes}: margin below 50 % of Nova's limit"


def test_ssh_host_key_installed_when_the_stack_generates_one() -> None:
    """The stack generates each node's host key and pins it in the validation: cloud-init
    installs exactly that key (and then generates none of its own)."""
    s = load_stack_file("dev", ROOT)
    node = s.plan.patroni[0]
    key = SshHostKey(
        private="-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n",
        public="ssh-ed25519 AAAAx",
    )
    with_key = dataclasses.replace(PG_SECRETS, host_key=key)
    doc = cloud_config(render_patroni_node(s, Target.vm(s), node, with_key))
    assert doc["ssh_keys"] == {"ed25519_private": key.private, "ed25519_public": key.public}
    assert "ssh_keys" not in cloud_config(render_patroni_node(s, Target.vm(s), node, PG_SECRETS))
    assert yaml.safe_load(render_bastion(s, key))["ssh_keys"]["ed25519_public"] == key.public
