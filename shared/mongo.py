"""The database client. One MongoDB database per service; no service reads another's.

PyMongo's AsyncMongoClient is MongoDB's official asyncio driver and the successor of Motor, which MongoDB
has deprecated (end of life May 2026). It speaks the same wire protocol to MongoDB and to FerretDB.
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.settings import Settings

Document = dict[str, Any]


def make_client(settings: Settings, *, app_name: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(
        settings.mongodb_uri,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        connectTimeoutMS=5_000,
    )


def service_database(
    client: AsyncMongoClient[Document], settings: Settings, service: str
) -> AsyncDatabase[Document]:
    return client[settings.database_name(service)]
