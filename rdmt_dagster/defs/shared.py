"""Resources shared by both arms: storage and standards, notifications, IO managers, the L2 configuration."""

from ..resources import RDMTConfig, env_or
from ..resources.io_managers import EvaluationsIOManager, MetricsIOManager
from ..resources.notifications import NotificationsConfig, notifications_from_env
from .l2.io_managers import L2IOManager
from .l2.resources import L2Config, l2_config_from_env
from .l2.runners import L2Runner, l2_runner_from_env


def config_from_env() -> RDMTConfig:
    """`RDMTConfig` from ``RDMT_HOME``, ``RDMT_DATABASE_URL`` and ``RDMT_STANDARDS``."""
    return RDMTConfig(
        home=env_or("RDMT_HOME", "rdmt_data"),
        database_url=env_or("RDMT_DATABASE_URL", None),
        standards_file=env_or("RDMT_STANDARDS", None),
    )


def shared_resources(rdmt: RDMTConfig | None = None, notifications: NotificationsConfig | None = None,
                     l2: L2Config | None = None, l2_runner: L2Runner | None = None) -> dict:
    """The resources of the code location; each configured from the environment unless given."""
    rdmt = rdmt or config_from_env()
    return {
        "rdmt": rdmt,
        "notifications": notifications or notifications_from_env(),
        "l2": l2 or l2_config_from_env(),
        "l2_runner": l2_runner or l2_runner_from_env(),
        "metrics_io_manager": MetricsIOManager(rdmt=rdmt),
        "evaluations_io_manager": EvaluationsIOManager(rdmt=rdmt),
        "l2_io_manager": L2IOManager(rdmt=rdmt),
    }
