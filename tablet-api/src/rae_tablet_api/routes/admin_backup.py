"""``POST /api/v1/admin/backup`` ``{"dest": "/abs/dir"}``: a consistent snapshot of the
whole node taken inside the running node (which holds the DuckDB lock); what
``rae-edge backup DIR`` calls beside a live node, and the nightly backup timer with it.

The snapshot holds every tenant's data, so only an admin of the node's own tenant may
take it, and only into a folder under the configured backup root (``backup_root``,
default ``<data_dir>-backups``): an API call never writes elsewhere on the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import post
from pydantic import BaseModel, ConfigDict, Field

from rae_edge.backup import backup_node
from rae_edge.errors import InvalidInputError, PermissionDeniedError
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_tablet_api import guards


class BackupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dest: str = Field(min_length=1, max_length=4096, description="absolute folder to write")


@post("/api/v1/admin/backup", sync_to_thread=True, tags=["admin"], status_code=201,
      guards=guards.ADMIN,
      summary="Back up the running node into a folder on its machine")
def admin_backup(node: EdgeNode, principal: Principal, data: BackupRequest) -> dict[str, Any]:
    if principal.tenant_id != node.tenant_id:
        raise PermissionDeniedError("a node backup holds every tenant's data: only an admin "
                                    "of the node's own tenant may take one")
    if "\x00" in data.dest or not Path(data.dest).is_absolute():
        raise InvalidInputError(f"dest must be an absolute path, got {data.dest!r}")
    root = node.settings.backups_dir().resolve()
    dest = Path(data.dest).resolve()
    if root not in dest.parents:
        raise InvalidInputError(f"dest {str(dest)!r} is outside the backup root {str(root)!r} "
                                "(setting backup_root)")
    root.mkdir(parents=True, exist_ok=True)
    return backup_node(node, dest)


ROUTES = [admin_backup]
