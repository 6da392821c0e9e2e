"""The inline runtime: run a flow now, in the calling process."""

from __future__ import annotations

from active_data_flow.registry import register_runtime
from active_data_flow.runtime import Runtime, RuntimeConfig

__all__ = ["Inline"]


@register_runtime("inline")
class Inline(Runtime):
    """Run flows immediately, in this process (the default runtime of every flow).

    Example:
        >>> from active_data_flow.runtimes.inline import Inline
        >>> Inline(batch_size=500).to_dict()
        {'type': 'inline', 'config': {'batch_size': 500}}
    """

    Config = RuntimeConfig
