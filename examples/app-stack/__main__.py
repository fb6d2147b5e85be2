"""Example application stack: read pgha's outputs, turn them into the app's DB settings."""

import pulumi
from app_config import OPTIONAL, REQUIRED, app_dsn, db_config

CA_PATH = "/etc/app/pgha-ca.crt"

pgha = pulumi.StackReference("pgha", stack_name=pulumi.Config().require("pghaStack"))
outputs = pulumi.Output.all(**{name: pgha.get_output(name) for name in REQUIRED + OPTIONAL})

# The whole config carries the password: exported as a secret.
pulumi.export("db_config", pulumi.Output.secret(outputs.apply(lambda o: db_config(o, CA_PATH))))
# Safe to show: no password in it.
pulumi.export("db_dsn", pgha.require_output("libpq_dsn").apply(lambda dsn: app_dsn(dsn, CA_PATH)))
# From non-secret outputs only, so it stays readable.
endpoint = pulumi.Output.all(*(pgha.get_output(name) for name in OPTIONAL)).apply(
    lambda v: next((x for x in v if x), None)
)
pulumi.export("db_endpoint", endpoint)
