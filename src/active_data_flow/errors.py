"""The error hierarchy of ActiveDataFlow.

Every error raised on purpose by the library derives from :class:`ActiveDataFlowError`, so
``except ActiveDataFlowError`` catches all of them. The tree::

    ActiveDataFlowError
    ├── ConfigurationError (ValueError)        bad option, unknown type, bad flow definition
    │   ├── ConnectorNotFound (LookupError)
    │   └── RuntimeNotFound (LookupError)
    ├── AlreadyRegistered                      a type name registered twice
    ├── SchemaError (ValueError)               a Typed message violates its schema
    ├── ConnectorError                         a source or sink failed at run time
    │   ├── SourceError
    │   ├── SinkError
    │   │   └── RecordRejected                 one record refused (invalid, duplicate key)
    │   └── ConnectorTimeout                   transient: connection refused/reset/timed out
    └── FlowError
        ├── FlowRunError                       a run failed; carries the partial RunResult
        ├── RunClaimLost                       a run's lease was taken over (fencing)
        └── WorkerLost                         a run's worker stopped renewing its lease

Driver errors are translated at the connector edge and chained (``raise ... from exc``), so
the original exception is always available as ``__cause__``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from active_data_flow.runner import RunResult

__all__ = [
    "ActiveDataFlowError",
    "AlreadyRegistered",
    "ConfigurationError",
    "ConnectorError",
    "ConnectorNotFound",
    "ConnectorTimeout",
    "FlowError",
    "FlowRunError",
    "RecordRejected",
    "RunClaimLost",
    "RuntimeNotFound",
    "SchemaError",
    "SinkError",
    "SourceError",
    "WorkerLost",
    "caused_by",
    "did_you_mean",
    "error_type",
    "is_transient",
]


class ActiveDataFlowError(Exception):
    """An ActiveDataFlow operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())


class ConfigurationError(ActiveDataFlowError, ValueError):
    """The configuration is invalid.

    Attributes:
        option: the option (or attribute, field, file) at fault, when there is one.
    """

    def __init__(self, message: str | None = None, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class ConnectorNotFound(ConfigurationError, LookupError):
    """No connector is registered under that type name."""


class RuntimeNotFound(ConfigurationError, LookupError):
    """No runtime is registered under that type name."""


class AlreadyRegistered(ActiveDataFlowError):
    """A connector or runtime is already registered under that type name."""


class SchemaError(ActiveDataFlowError, ValueError):
    """A typed message does not match its schema.

    Attributes:
        fields: the names (dotted paths) of the offending fields, in the order reported.
    """

    def __init__(self, message: str | None = None, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class ConnectorError(ActiveDataFlowError):
    """A source or sink failed while reading or writing.

    ``transient`` tells runtimes whether retrying the same work may succeed.
    """

    transient: bool = False


class SourceError(ConnectorError):
    """A source failed to read."""


class SinkError(ConnectorError):
    """A sink failed to write."""


class RecordRejected(SinkError):
    """A sink refused one record (it failed validation or violates a unique key).

    Attributes:
        record: the record as the sink received it.
        key: a short identification of the record for logs (its unique key when known).
    """

    def __init__(self, message: str | None = None, *, record: Any = None, key: Any = None) -> None:
        super().__init__(message)
        self.record = record
        self.key = key


class ConnectorTimeout(ConnectorError):
    """A connection was refused, reset or timed out; retrying may succeed."""

    transient = True


class FlowError(ActiveDataFlowError):
    """A data flow is misdefined or failed."""


class FlowRunError(FlowError):
    """A flow run failed.

    Attributes:
        result: the counts up to the failure; ``result.cursor`` is the last checkpoint, the
            position a new run resumes after without losing anything.
        flow: the flow's name.
    """

    def __init__(
        self, message: str | None = None, *, flow: str = "", result: RunResult | None = None
    ) -> None:
        super().__init__(message)
        self.flow = flow
        self.result = result

    @property
    def transient(self) -> bool:
        """Whether the underlying cause is transient (see :func:`is_transient`)."""
        return is_transient(self.__cause__)


class RunClaimLost(FlowError):
    """This worker no longer holds the run's claim: another worker reclaimed it.

    Raised instead of writing a status or cursor, so that a fenced-off worker cannot
    overwrite the newer holder's progress.
    """


class WorkerLost(FlowError):
    """The worker executing a run stopped renewing its lease (it died, hung or lost its
    database); the run was reclaimed and the flow resumes from its last checkpoint."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'cursor_column'?)`` when one of ``choices`` is close to ``word``,
    else ``""``: the hint every "unknown option / name" message appends."""
    options = [c for c in choices if c != word]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.75)
    if not close:  # a slip of case: 'europe/paris', 'CURSOR_COLUMN'
        lowered = {c.lower(): c for c in options}
        close = [lowered[c] for c in difflib.get_close_matches(word.lower(), list(lowered),
                                                               n=1, cutoff=0.75)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def error_type(exc: BaseException) -> str:
    """How run records and dead letters name an error's type: ``module.QualName``
    (at most 200 characters, the end kept)."""
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"[-200:]


# Exception types from the standard library that mean "try again later".
_TRANSIENT_BUILTINS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,
)


def is_transient(exc: BaseException | None) -> bool:
    """Tell whether ``exc`` (or an exception it was raised from) is worth retrying.

    Transient: :class:`ConnectorError` subclasses marked ``transient``, the standard
    library's ``ConnectionError``/``TimeoutError``, and any exception carrying a true
    ``transient`` attribute (database layers set it for disconnects and deadlocks).
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        flag = getattr(exc, "transient", None)
        if isinstance(flag, bool) and not isinstance(exc, FlowRunError):
            if flag:
                return True
        elif isinstance(exc, _TRANSIENT_BUILTINS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``exc``, or an exception it was raised from or during, is a ``kind``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
