"""The database client. One MongoDB database per service; no service reads another's.

PyMongo's AsyncMongoClient is MongoDB's official asyncio driver and the successor of Motor, which MongoDB
has deprecated (end of life May 2026). It speaks the same wire protocol to MongoDB and to FerretDB.
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure

from shared.metrics import DATABASE_COMMANDS
from shared.settings import Settings

Document = dict[str, Any]


class CommandCounter(monitoring.CommandListener):
    """Counts the client's commands by name (`dealflow_database_commands_total`): round trips per event.

    PyMongo calls these synchronously around every command, so they only increment a counter.
    """

    def __init__(self, client: str) -> None:
        self.client = client

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        DATABASE_COMMANDS.labels(self.client, event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def make_client(settings: Settings, *, app_name: str) -> AsyncMongoClient[Document]:
    """A client for `MONGODB_URI`, which carries the credentials and TLS options (`tls=true`, `tlsCAFile`).

    `MONGODB_TLS_CA_FILE` is the same as `tls=true&tlsCAFile=...` in the URI, for deployments that mount
    the CA file and keep the URI short. Its commands are counted under its app name (see CommandCounter).
    """
    tls: dict[str, Any] = {}
    if settings.mongodb_tls_ca_file is not None:
        tls = {"tls": True, "tlsCAFile": str(settings.mongodb_tls_ca_file)}
    return AsyncMongoClient(
        settings.mongodb_uri.get_secret_value(),
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        connectTimeoutMS=5_000,
        event_listeners=[CommandCounter(app_name)],
        **tls,
    )


def service_database(
    client: AsyncMongoClient[Document], settings: Settings, service: str
) -> AsyncDatabase[Document]:
    return client[settings.database_name(service)]


class DatabaseInterrupted(ConnectionFailure):
    """The server refused or dropped an operation because it is stopping, stepping down or overloaded.

    PyMongo reports these as OperationFailure, like a bad query; they are transient all the same.
    """


# MongoDB's codes for interrupted or unavailable servers (HostUnreachable, HostNotFound, NetworkTimeout,
# ShutdownInProgress, PrimarySteppedDown, ExceededTimeLimit, SocketException, NotWritablePrimary,
# InterruptedAtShutdown, InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary).
INTERRUPTED_CODES = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
INTERNAL_ERROR = 1


def interrupted(failure: OperationFailure) -> bool:
    if failure.code in INTERRUPTED_CODES or failure.has_error_label("RetryableWriteError"):
        return True
    # FerretDB answers InternalError when a query is cancelled under it, e.g. while it shuts down.
    return failure.code == INTERNAL_ERROR and "context canceled" in str(failure)
