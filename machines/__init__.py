"""pgha machines: every node of a stack booted from its EXACT rendered user-data on real
Debian 12 systems on this host (systemd-nspawn containers, or qemu VMs, with systemd and
cloud-init 22.4 reading a NoCloud seed), then the deploy's own validation over real SSH.

    python -m machines [--stack dev] [--name N] up [--backend qemu | --vms pg1 | --backup] | status | down
                                                | ssh NODE | logs | drill SCENARIO...

Backend and layout: image.py (cached mmdebstrap rootfs), spec.py (names, addresses,
network design), seed.py (NoCloud meta-data / network-config), render.py (THE render
call site), net.py (namespaces, bridge, NAT), nodes.py (overlay, data disk, nspawn),
qemu.py (the VM backend: image, disks, seed ISO, tap, command line), ssh.py, cluster.py
(up/status/down/logs, per-node backend), drills.py, s3.py (``up --backup``: a SeaweedFS
on the host answering for OVH Object Storage; its names and CA go into the nodes' roots,
never into the user-data). Details: docs/machines.md.

What a container cannot show, and what the VM backend (qemu.py: ``up --backend qemu``
or ``--vms NODES``) shows instead (THE list, as in docs/machines.md; everything else is
the node as on OVH):

1. Kernel: a container shares the host's. No kernel modules (``modprobe softdog``
   fails), so no /dev/watchdog: Patroni's ``watchdog: required`` can never be satisfied,
   and sysctls are the host's. So containers get ``patroni.watchdog: automatic``
   (render.CONTAINER_OVERRIDES; ``up --exact`` keeps ``required`` and fails).
   VM: Debian's cloud kernel; the stack's ``watchdog: required`` unchanged; softdog
   loaded by the render's runcmd, /dev/watchdog given to postgres by its udev rule (F1),
   armed by Patroni; the frozen-primary drill shows the reset.
2. Block devices: no udev in a container (/sys is read-only), so no /dev/disk/by-*
   links are made by the system and no ``.device`` units appear. The Patroni data
   volume is a loop device (sparse file, ``volume_size_gb``) bind-mounted under its
   kernel name /dev/loopN (so blkid resolves LABEL=) and as
   /dev/disk/by-id/virtio-<20 chars of its volume id> (how OVH names volumes, and what
   the render's ``fs_setup`` names). /dev/disk/by-label/* never appears (that is udev's
   job), and after a reboot the fstab mount is skipped (the node-death drill mounts it).
   VM: a virtio-blk disk with ``serial=<volume id[:20]>``: the guest's udev makes the
   by-id link, systemd mounts it at every boot.
3. Network: container NICs are veths (ens4 private, ens3 the bastion's "public"),
   matched by MAC like OVH's; there is no DHCP and no metadata service: meta-data and
   network-config come from the NoCloud seed instead of OpenStack's config drive/metadata.
   VM: virtio-net (ens4, PCI slot 4) with the planned MAC on a tap in the vRack bridge;
   the seed is a ``cidata`` ISO (like a config drive). The bastion is always a container.
4. Boot, time, hardware clock, CPU/memory limits: a container has no kernel, initramfs
   or resizefs, and the host's clock and limits. VM: kernel + initramfs (direct kernel
   boot, no bootloader), an 8 GiB qcow2 root grown by cloud-init, its own clock; under
   TCG (no hardware virtualization) ~10x slower than OVH, every qemu ``nice -n 19``.
"""
