"""rae_image: the offline appliance bundle for the edge node (``rae-image build``).

Modules:
- ``wheelhouse``: the locked pins (``uv export``), cached ``pip download`` of their wheels
  for the target platform, the aarch64 gap report, and the members' wheels (``uv build``);
- ``bundle``: assembles the versioned bundle folder, its manifest (versions, models with
  sha256, every file's sha256), ``SHA256SUMS`` and the tar with its own checksum;
- ``units``: the systemd units (node with restart + watchdog, backup service + timer) and
  the default config;
- ``installer``: shipped as ``install.py``; standard library only: A/B install, update with
  migrations, health check and automatic rollback;
- ``supervise``: shipped as ``supervise.py``; runs ``rae-edge serve`` with sd_notify
  readiness and a watchdog that pings only while ``/api/v1/health`` answers;
- ``cli``: ``rae-image build`` and ``rae-image verify``.

It may import ``rae_edge`` (the schema version it records) but nothing that serves.
"""
