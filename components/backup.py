"""BackupRepository: the stack's pgBackRest repository in OVH Object Storage (backup.enabled).

Creates, per stack: a versioned, server-side-encrypted bucket (``backup.bucket`` in
``backup.region``, protected: ``pulumi destroy`` never deletes backups without an
explicit unprotect), an Object Storage user with the ``objectstore_operator`` role, its
S3 credential, an S3 policy limiting that user to this one bucket, and the repository's
aes-256-cbc passphrase (pulumi-random). The credential and the passphrase are only ever
secret Outputs, consumed by the Patroni nodes' user-data (itself a secret).

With ``backup.restore_from`` (a NEW stack bootstrapped from another stack's repository),
the policy also lets the user READ the source bucket (get and list objects, nothing that
writes or deletes), and the source's passphrase (secret config
``pgha-restore-from:cipherPass``) travels, as a secret Output, to the Patroni user-data.

Not chosen: object lock (pgBackRest expires old backups and WAL by deleting them; a
compliance lock would make retention fail) and a second repository in another region
(``backup.region`` may name another region than the cluster's instead, so one
repository survives the loss of the cluster's region).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_ovh as ovh
import pulumi_random as random

from pgha.settings import Settings

TYPE = "pgha:index:BackupRepository"
PASSPHRASE_LENGTH = 64
#: What pgBackRest does in its repository, and nothing else.
S3_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
)
#: What a restore reads in ANOTHER stack's repository (backup.restore_from): objects and
#: listings (pgBackRest's HEAD is a GetObject), never a write or a delete.
S3_READ_ACTIONS = ("s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation")


def bucket_policy(bucket: str, restore_from: str = "") -> str:
    """The S3 policy of the repository user: this bucket and its objects only; with
    ``restore_from``, read-only access to that (source) bucket too."""
    statements = [
        {
            "Sid": "PgBackRestRepository",
            "Effect": "Allow",
            "Action": list(S3_ACTIONS),
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        }
    ]
    if restore_from:
        statements.append(
            {
                "Sid": "RestoreFromSourceReadOnly",
                "Effect": "Allow",
                "Action": list(S3_READ_ACTIONS),
                "Resource": [f"arn:aws:s3:::{restore_from}", f"arn:aws:s3:::{restore_from}/*"],
            }
        )
    return json.dumps({"Statement": statements}, sort_keys=True)


@dataclass(frozen=True)
class BackupRepositoryArgs:
    settings: Settings
    """Validated stack settings (backup.bucket, backup.region)."""
    service_name: pulumi.Input[str]
    """OVH Public Cloud project id."""
    restore_from_cipher_pass: pulumi.Input[str] | None = None
    """The SOURCE repository's passphrase (backup.restore_from only; secret config pgha-restore-from:cipherPass)."""


class BackupRepository(pulumi.ComponentResource):
    bucket: pulumi.Output[str]
    """The bucket's name (not a secret)."""
    access_key: pulumi.Output[str]
    """S3 access key id of the repository user (secret)."""
    secret_key: pulumi.Output[str]
    """S3 secret key (secret)."""
    cipher_pass: pulumi.Output[str]
    """The repository's encryption passphrase (secret)."""
    restore_from_cipher_pass: pulumi.Output[str] | None
    """The source repository's passphrase (secret), with backup.restore_from only."""

    def __init__(self, name: str, args: BackupRepositoryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        s = args.settings
        bk = s.backup
        source = bk.restore_from.bucket
        if source and args.restore_from_cipher_pass is None:
            raise ValueError(f"{name}: backup.restore_from.bucket is set but no source passphrase was given")
        child = pulumi.ResourceOptions(parent=self)
        storage = ovh.cloudproject.Storage(
            f"{name}-bucket",
            service_name=args.service_name,
            region_name=bk.region.upper(),
            name=bk.bucket,
            versioning=ovh.cloudproject.StorageVersioningArgs(status="enabled"),
            encryption=ovh.cloudproject.StorageEncryptionArgs(sse_algorithm="AES256"),
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        user = ovh.cloudproject.User(
            f"{name}-user",
            service_name=args.service_name,
            description=f"pgha {s.stack}: pgBackRest repository {bk.bucket}",
            role_name="objectstore_operator",
            opts=child,
        )
        credential = ovh.cloudproject.S3Credential(
            f"{name}-s3-credential", service_name=args.service_name, user_id=user.id, opts=child
        )
        ovh.cloudproject.S3Policy(
            f"{name}-s3-policy",
            service_name=args.service_name,
            user_id=user.id,
            policy=bucket_policy(bk.bucket, source),
            opts=child,
        )
        passphrase = random.RandomPassword(f"{name}-cipher-pass", length=PASSPHRASE_LENGTH, special=False, opts=child)
        self.bucket = storage.name
        self.access_key = pulumi.Output.secret(credential.access_key_id)
        self.secret_key = pulumi.Output.secret(credential.secret_access_key)
        self.cipher_pass = pulumi.Output.secret(passphrase.result)
        self.restore_from_cipher_pass = (
            pulumi.Output.secret(args.restore_from_cipher_pass) if source and args.restore_from_cipher_pass else None
        )
        self.register_outputs({"bucket": self.bucket})
