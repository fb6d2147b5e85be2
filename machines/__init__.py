"""pgha machines: every node of a stack booted from its EXACT rendered user-data on real
Debian 12 systems on this host (systemd-nspawn containers with systemd and cloud-init
22.4 reading a NoCloud seed), then the deploy's own validation over real SSH.

    python -m machines [--stack dev] up | status | down | ssh NODE | logs

Backend and layout: image.py (cached mmdebstrap rootfs), spec.py (names, addresses,
network design), seed.py (NoCloud meta-data / network-config), render.py (THE render
call site), net.py (namespaces, bridge, NAT), nodes.py (overlay, data disk, nspawn),
ssh.py, cluster.py (up/status/down/logs). Details: docs/machines.md.

What a container cannot show (THE list; everything else is the node as on OVH):

1. Kernel: the host's kernel is shared. No kernel modules (``modprobe softdog`` fails),
   so no /dev/watchdog: Patroni's ``watchdog: required`` can never be satisfied, and
   sysctls are the host's. So the tier sets ``patroni.watchdog: automatic``
   (render.CONTAINER_OVERRIDES; ``up --exact`` keeps ``required`` and fails).
2. Block devices: no udev in a container (/sys is read-only), so no /dev/disk/by-*
   links are made by the system and no ``.device`` units appear. The Patroni data
   volume is a loop device (sparse file, ``volume_size_gb``) bind-mounted under its
   kernel name /dev/loopN (so blkid resolves LABEL=) and as
   /dev/disk/by-id/virtio-<20 chars of its volume id> (how OVH names volumes, and what
   the render's ``fs_setup`` names). /dev/disk/by-label/* never appears (that is udev's job).
3. Network: NICs are veths (ens4 private, ens3 the bastion's "public"), matched by MAC
   like OVH's; there is no DHCP and no metadata service: meta-data and network-config
   come from the NoCloud seed instead of OpenStack's config drive/metadata.
4. Time, hardware clock, CPU/memory limits: the host's.
"""
