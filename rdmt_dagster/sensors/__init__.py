"""Dagster sensors of RDMT: how reference files reach the ``monitor_reference_files`` job.

* `crds_sensor`: WFI files of monitored types added by each new default
  Roman CRDS context (``CRDS_SERVER_URL``, ``CRDS_PATH``).
* `registered_files_sensor`: files registered in the database, e.g. by
  ``rdmt submit`` (`rdmt_dagster.submission.submit`).
* `drop_folder_sensor`: ``*.asdf`` files copied into ``RDMT_DROPBOX``
  (default ``<home>/dropbox``).

All three run by default: RDMT's purpose is unattended monitoring, a tick
that finds nothing costs milliseconds (one JSON-RPC call, one indexed query,
one ``scandir``), and each does nothing until it is fed (the CRDS sensor
skips without any network access while ``CRDS_SERVER_URL`` is unset). Each
needs the ``rdmt`` resource (`RDMTConfig`).
"""

from .crds import crds_sensor
from .drop_folder import drop_folder_sensor
from .handoff import REFERENCE_FILE_JOB, hand_off
from .registered import registered_files_sensor

SENSORS = [crds_sensor, registered_files_sensor, drop_folder_sensor]

__all__ = ["REFERENCE_FILE_JOB", "SENSORS", "crds_sensor", "drop_folder_sensor", "hand_off",
           "registered_files_sensor"]
