"""Run the generated services side by side: `microforge up`."""

from microforge.runner.ports import free_port, port_is_free
from microforge.runner.supervisor import (
    Interrupted,
    ProcessSpec,
    ReadinessError,
    Supervisor,
    SupervisorError,
)

__all__ = [
    "Interrupted",
    "ProcessSpec",
    "ReadinessError",
    "Supervisor",
    "SupervisorError",
    "free_port",
    "port_is_free",
]
