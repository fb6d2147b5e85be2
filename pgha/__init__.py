"""pgha's domain model: validated settings, the address plan, secrets, timing profiles,
the allow-list, and the targets the rendered files run on.

Pure Python: never imports pulumi, jinja2 or the lab. ``cloud_init`` renders files from
it, ``components`` creates cloud resources from it, ``lab`` and ``machines`` run it.
"""
