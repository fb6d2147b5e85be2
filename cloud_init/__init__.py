"""Pure rendering of what runs on a node: settings + target + secrets -> files and
#cloud-config user-data. The domain model lives in ``pgha``; this package holds the
renderer (one module per role), its jinja2 templates and the programs installed on
nodes (``node_scripts/``).

Never imports pulumi: the Pulumi components, the lab, the machines tier and the render
command all call the same functions here.
"""
