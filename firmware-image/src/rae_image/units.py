"""What the bundle carries besides wheels: systemd units and the default config.

Units are templates: the installer fills ``@PREFIX@``, ``@CONFIG@`` and ``@DATA_DIR@``.
They run the release behind the ``current`` link, so an update switches the link and
restarts; the node runs under ``supervise.py`` (sd_notify readiness and a watchdog that
pings only while ``/api/v1/health`` answers).
"""

from __future__ import annotations

NODE_SERVICE = """\
[Unit]
Description=RAE Edge node (tablet API, background workers, sync agent)
After=network.target
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
ExecStart=@PREFIX@/current/venv/bin/python @PREFIX@/current/supervise.py --config @CONFIG@
Restart=on-failure
RestartSec=5
WatchdogSec=60
TimeoutStartSec=180
TimeoutStopSec=30
Environment=HF_HUB_OFFLINE=1
Environment=PYTHONUNBUFFERED=1
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
ReadWritePaths=@DATA_DIR@

[Install]
WantedBy=multi-user.target
"""

BACKUP_SERVICE = """\
[Unit]
Description=RAE Edge scheduled backup of the node's data
After=rae-edge.service

[Service]
Type=oneshot
Nice=10
IOSchedulingClass=idle
Environment=HF_HUB_OFFLINE=1
# An admin token for backing up through the running node (RAE_ADMIN_TOKEN=...).
EnvironmentFile=-/etc/rae-edge/backup.env
ExecStart=@PREFIX@/current/venv/bin/rae-edge backup --config @CONFIG@ \\
    --timestamped --keep 7 @DATA_DIR@-backups
"""

BACKUP_TIMER = """\
[Unit]
Description=Daily backup of the RAE Edge node

[Timer]
OnCalendar=*-*-* 02:30:00
RandomizedDelaySec=30min
Persistent=true

[Install]
WantedBy=timers.target
"""

UNITS = {
    "rae-edge.service": NODE_SERVICE,
    "rae-edge-backup.service": BACKUP_SERVICE,
    "rae-edge-backup.timer": BACKUP_TIMER,
}

DEFAULT_CONFIG = """\
# RAE Edge node settings (every key: rae_edge.config.EdgeSettings; unknown keys are an error).
# Environment variables RAE_* override this file (RAE_API__PORT=8080).
data_dir: @DATA_DIR@
node:
  tenant_id: demo
  site_id: plant-1
  node_id: node-1
api:
  host: 0.0.0.0
  port: 8470
sync:
  mqtt_url: null
"""

README = """\
RAE Edge appliance bundle {version} ({platform}, Python {python})

Install or update (offline; as root for the default paths):

    sha256sum -c SHA256SUMS
    python3 install.py --service systemd --systemd-dir /etc/systemd/system

Try it in a folder instead of /:

    python3 install.py --root /tmp/rae-root

See manifest.json for every file, version and checksum, and install.py --help.
"""
