"""Pure rendering of what runs on a node: settings -> files + #cloud-config user-data.

Never imports pulumi: the Pulumi components, the lab and the render command all call
the same functions here.
"""
