"""Pulumi mocks for the component tests: every registration recorded, secrets known.

The monitor records each registration with its parent, dependencies and options; the
mocks return deterministic outputs and remember every secret value they hand out
(private keys, passwords), so tests can look for leaks. ``conftest.harness`` installs
them; tests build component Args directly and run programs with :meth:`Harness.run`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pulumi
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.sync_await import _sync_await

from cloud_init.common import read_user_data
from components.nodes import Placement
from components.pki import TlsKeyPair
from pgha.flavors import flavor_ram_mib
from pgha.secrets import SshHostKey, fake_keypair
from pgha.settings import Settings, load, sections_from_stack_yaml

ROOT = Path(__file__).resolve().parents[2]
#: Instance inputs (as the engine names them) a node ignores unless named in PGHA_ROLL:
#: those that would replace or reboot it.
ROLLED_ONLY_INPUTS = frozenset({"userData", "imageId", "blockDevices", "schedulerHints", "flavorName"})
#: The deploy key a test's Placement carries (components render it into ssh_authorized_keys).
DEPLOY_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockDeployKeyOfTheStackForTests0000000000 pgha-deploy"


def mock_host_key(resource_name: str) -> str:
    """The public key the mocks give a tls.PrivateKey named ``resource_name`` (stripped)."""
    return f"ssh-ed25519 AAAAMOCK{resource_name.replace('-', '')} mock"


def mock_ssh_host_key(resource_name: str) -> SshHostKey:
    """What the mocks give a tls.PrivateKey named ``resource_name``, as the node receives it."""
    private = f"-----BEGIN OPENSSH PRIVATE KEY-----\nMOCK-SSH-{resource_name}\n-----END OPENSSH PRIVATE KEY-----\n"
    return SshHostKey(private=private, public=mock_host_key(resource_name))


@functools.cache
def deploy_test_key() -> str:
    """A real (generated) OpenSSH ed25519 public key: what a team puts in ssh_public_keys."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " ops@test"


PROJECT_ID = "0123456789abcdef0123456789abcdef"
OPENSTACK_NETWORK_ID = "11111111-2222-3333-4444-555555555555"
IMAGE_ID = "99999999-8888-7777-6666-555555555555"
BASTION_PUBLIC_IP = "198.51.100.77"
SUBNET_ID = "subnet-id"

#: Resource type tokens the component tests look resources up by.
INSTANCE = "openstack:compute/instance:Instance"
PORT = "openstack:networking/port:Port"
HOST_KEY = "tls:index/privateKey:PrivateKey"
PASSWORD = "random:index/randomPassword:RandomPassword"


def unwrap(value: Any) -> Any:
    """A registered input without secret wrappers (for comparisons)."""
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


@dataclass
class Registered:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    """As the engine received them: secrets are still wrapped."""
    dependencies: set[str]
    protect: bool
    ignore_changes: list[str]
    delete_before_replace: bool

    def input(self, key: str) -> Any:
        return unwrap(self.inputs.get(key))

    def user_data(self) -> str:
        """The instance's #cloud-config text (its userData input is gzip+base64, as Nova gets it)."""
        return read_user_data(self.input("userData"))

    def is_secret(self, key: str) -> bool:
        return rpc.is_rpc_secret(self.inputs.get(key))


class PghaMocks(pulumi.runtime.Mocks):
    """Inputs echoed back plus the computed outputs components read."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        #: Flavor and image names the mocked region does not have (lookups fail).
        self.missing: set[str] = set()
        #: RAM (MiB) the mocked region reports per flavor, where it differs from pgha's table.
        self.flavor_ram: dict[str, int] = {}
        #: (token, name, region) of every invoke, in order.
        self.calls: list[tuple[str, Any, Any]] = []

    def _secret(self, value: str) -> str:
        self.secrets.add(value)
        return value

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        out = dict(args.inputs)
        n = args.name
        t = args.typ
        if t == "ovh:CloudProject/networkPrivate:NetworkPrivate":
            out["regionsOpenstackIds"] = dict.fromkeys(args.inputs.get("regions", []), OPENSTACK_NETWORK_ID)
            return f"pn-123456_{args.inputs.get('vlanId', 0)}", out
        if t == "tls:index/privateKey:PrivateKey":
            out["privateKeyPem"] = self._secret(
                f"-----BEGIN EC PRIVATE KEY-----\nMOCK-SEC1-{n}\n-----END EC PRIVATE KEY-----\n"
            )
            out["privateKeyPemPkcs8"] = self._secret(
                f"-----BEGIN PRIVATE KEY-----\nMOCK-PKCS8-{n}\n-----END PRIVATE KEY-----\n"
            )
            out["privateKeyOpenssh"] = self._secret(mock_ssh_host_key(n).private)
            out["publicKeyOpenssh"] = mock_host_key(n) + "\n"
        elif t == "tls:index/selfSignedCert:SelfSignedCert":
            out["certPem"] = f"-----BEGIN CERTIFICATE-----\nMOCK-CA-{n}\n-----END CERTIFICATE-----\n"
        elif t == "tls:index/certRequest:CertRequest":
            out["certRequestPem"] = (
                f"-----BEGIN CERTIFICATE REQUEST-----\nMOCK-CSR-{n}\n-----END CERTIFICATE REQUEST-----\n"
            )
        elif t == "tls:index/locallySignedCert:LocallySignedCert":
            out["certPem"] = f"-----BEGIN CERTIFICATE-----\nMOCK-CERT-{n}\n-----END CERTIFICATE-----\n"
        elif t == "random:index/randomPassword:RandomPassword":
            out["result"] = self._secret(f"MockPw{n.replace('-', '')}0123456789abcdefXYZ"[:32])
        elif t == "ovh:CloudProject/s3Credential:S3Credential":
            out["accessKeyId"] = self._secret(f"MOCKACCESSKEY{n.replace('-', '').upper()}")
            out["secretAccessKey"] = self._secret(f"MockS3Secret{n.replace('-', '')}")
        elif t == "openstack:networking/floatingIp:FloatingIp":
            out["address"] = BASTION_PUBLIC_IP
        elif t == "openstack:compute/instance:Instance":
            out["accessIpV4"] = BASTION_PUBLIC_IP if n.endswith("bastion") else "10.0.0.254"
        elif t == "command:remote:Command":
            out["stdout"] = f"OK mock check of {n}\n"
            out["stderr"] = ""
        return f"{n}-id", out

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        # The mock monitor iterates the failures: an empty list, never None.
        name = args.args.get("name")
        self.calls.append((args.token, name, args.args.get("region")))
        if name in self.missing:  # what the provider answers for a name the region lacks
            return {}, [("name", "Your query returned no results. Please change your search criteria and try again.")]
        if args.token == "openstack:images/getImage:getImage":
            return {"id": IMAGE_ID, "name": name}, []
        if args.token == "openstack:loadbalancer/getFlavorV2:getFlavorV2":
            return {"id": f"lb-flavor-{name}", "name": name}, []
        if args.token == "openstack:compute/getFlavor:getFlavor":
            ram = self.flavor_ram.get(str(name), flavor_ram_mib().get(str(name), 8000))
            return {"id": f"flavor-{name}", "name": name, "ram": ram, "vcpus": 2}, []
        return {}, []


class RecordingMonitor(MockMonitor):
    """MockMonitor that keeps each registration's parent, dependencies and options."""

    def __init__(self, mocks: PghaMocks):
        super().__init__(mocks)
        self.registered: dict[str, Registered] = {}
        self.component_outputs: dict[str, Any] = {}
        """URN -> outputs given to register_outputs (secrets still wrapped)."""

    def RegisterResourceOutputs(self, request):
        self.component_outputs[request.urn] = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        return super().RegisterResourceOutputs(request)

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        deps = set(request.dependencies)
        for prop in request.propertyDependencies.values():
            deps |= set(prop.urns)
        self.registered[response.urn] = Registered(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=request.custom,
            inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
            dependencies=deps,
            protect=bool(request.protect),
            ignore_changes=list(request.ignoreChanges),
            delete_before_replace=request.deleteBeforeReplace,
        )
        return response


@dataclass
class Harness:
    stack: str
    mocks: PghaMocks
    monitor: RecordingMonitor
    loop: asyncio.AbstractEventLoop
    _result: Any = field(default=None, repr=False)

    # ------------------------------------------------------------ running

    def run(self, program: Callable[[], Any]) -> Any:
        """Run ``program`` like the engine would; return its result once every RPC is done."""
        box: dict[str, Any] = {}

        @pulumi.runtime.test
        def wrapped() -> None:
            box["result"] = program()

        wrapped()
        return box.get("result")

    def resolve(self, value: Any) -> tuple[Any, bool]:
        """(plain value, is_secret) of an Output (or a plain value)."""
        if isinstance(value, pulumi.Output):
            return _sync_await(value.future()), bool(_sync_await(value.is_secret()))
        return value, False

    def settings(self) -> Settings:
        """The settings of :meth:`stack_yaml` (the committed stack, deployable values)."""
        return load(self.stack, sections_from_stack_yaml(self.stack_yaml()))

    def set_stack_config(self, doc: dict[str, Any]) -> None:
        """The engine's view of ``Pulumi.<stack>.yaml``: objects arrive JSON-encoded."""
        config = {}
        for key, value in (doc.get("config") or {}).items():
            config[key] = value if isinstance(value, str) else json.dumps(value)
        pulumi.runtime.set_all_config(config)

    def committed_stack_yaml(self) -> dict[str, Any]:
        """``Pulumi.<stack>.yaml`` as committed: example values that preview refuses."""
        return yaml.safe_load((ROOT / f"Pulumi.{self.stack}.yaml").read_text())

    def stack_yaml(self) -> dict[str, Any]:
        """The committed stack with its example values replaced, as a team deploying it would."""
        doc = self.committed_stack_yaml()
        config = doc["config"]
        config["pgha:access"]["ssh_public_keys"] = [deploy_test_key()]
        config["pgha:access"]["admin_cidrs"] = ["192.168.77.0/24"]  # the team's VPN
        dns = config["pgha:endpoint"].get("dns") or {}
        if dns.get("enabled"):
            dns["zone"] = "db.acme-corp.fr"
        return doc

    # ------------------------------------------------------------ queries

    @property
    def resources(self) -> list[Registered]:
        return list(self.monitor.registered.values())

    def of_type(self, token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == token]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"{len(matches)} resources named {name!r}: {[r.urn for r in matches]}"
        return matches[0]

    def component(self, token: str) -> Registered:
        matches = self.of_type(token)
        assert len(matches) == 1, f"{len(matches)} components of type {token}"
        return matches[0]

    def children(self, parent: Registered) -> list[Registered]:
        return [r for r in self.resources if r.parent == parent.urn]

    def descendants(self, parent: Registered) -> list[Registered]:
        out = []
        for c in self.children(parent):
            out += [c, *self.descendants(c)]
        return out

    def id_of(self, r: Registered) -> str:
        return f"{r.name}-id"

    def stack_outputs(self) -> dict[str, tuple[Any, bool]]:
        """Exported stack outputs: name -> (value, is_secret)."""
        root = get_root_resource()
        assert root is not None
        return {k: self.resolve(v) for k, v in root.outputs.items()}  # type: ignore[attr-defined]

    def secret_leaks(self) -> list[str]:
        """Where a secret the mocks handed out appears in plaintext: resource inputs,
        component outputs, and stack outputs not marked secret."""
        secrets = self.mocks.secrets
        leaks = [leak for r in self.resources for leak in plaintext_leaks(r.inputs, secrets, r.urn)]
        for urn, outputs in self.monitor.component_outputs.items():
            leaks += plaintext_leaks(outputs, secrets, f"{urn} outputs")
        for name, (value, is_secret) in self.stack_outputs().items():
            if not is_secret:
                leaks += plaintext_leaks(value, secrets, f"stack output {name}")
        return leaks


# ---------------------------------------------------------------- building Args


def static_placement(depends_on: tuple[pulumi.Resource, ...] = ()) -> Placement:
    """A Placement with plain ids, as a test builds Args directly."""
    return Placement(
        network_id=OPENSTACK_NETWORK_ID,
        subnet_id=SUBNET_ID,
        security_group_id="sg-id",
        deploy_key=DEPLOY_KEY,
        depends_on=depends_on,
    )


def fake_pair(name: str) -> TlsKeyPair:
    """The renderer's placeholder certificate and key, as Outputs (the key secret)."""
    kp = fake_keypair(name)
    return TlsKeyPair(cert=pulumi.Output.from_input(kp.cert), key=pulumi.Output.secret(kp.key))


def with_section(settings: Settings, section: str, **changes: Any) -> Settings:
    """A copy of ``settings`` with fields of one section (or nested section) replaced.

    ``with_section(s, "endpoint.dns", enabled=True)``; validation is not re-run, so keep
    changes consistent (the loader's own tests cover invalid combinations).
    """
    path = section.split(".")
    objs: list[Any] = [settings]
    for p in path:
        objs.append(getattr(objs[-1], p))
    new: Any = replace(objs[-1], **changes)
    for obj, p in zip(reversed(objs[:-1]), reversed(path), strict=True):
        new = replace(obj, **{p: new})
    return new


# ---------------------------------------------------------------- secrets


def plaintext_leaks(value: Any, secrets: set[str], where: str) -> list[str]:
    """Paths under ``value`` where a secret appears outside a secret wrapper."""
    if rpc.is_rpc_secret(value):
        return []
    if isinstance(value, dict):
        return [leak for k, v in value.items() for leak in plaintext_leaks(v, secrets, f"{where}.{k}")]
    if isinstance(value, (list, tuple)):
        return [leak for i, v in enumerate(value) for leak in plaintext_leaks(v, secrets, f"{where}[{i}]")]
    if isinstance(value, str):
        return [where for s in secrets if s in value]
    return []
