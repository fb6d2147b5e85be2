"""The lab: the same rendered node files, run by real etcd, Patroni, PostgreSQL and
HAProxy processes on loopback addresses of one machine. ``python -m lab --help``."""
