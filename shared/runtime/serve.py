"""Running a stage service as a process: uvicorn, signals, and the exit status of a start given up."""

from __future__ import annotations

import asyncio
import sys
from functools import partial

import uvicorn

from shared.runtime.definition import StageDefinition
from shared.runtime.service import StageService
from shared.settings import Settings

# What `uvicorn.run` also exits with when the app does not start; a supervisor starts the process afresh.
STARTUP_FAILED = 3


def run_stage(definition: StageDefinition, settings: Settings | None = None) -> None:
    """Entry point of `python -m services.<stage>`: consume and serve HTTP until SIGINT or SIGTERM."""
    service = StageService(definition, settings or Settings())
    if not asyncio.run(serve(service)):
        sys.exit(STARTUP_FAILED)


async def serve(service: StageService) -> bool:
    """Run the service under uvicorn until it is asked to stop; False if its start was given up."""
    server = uvicorn.Server(
        uvicorn.Config(
            service.build_app(),
            host=service.settings.http_host,
            port=service.http_port,
            # Our JSON logging stays in charge, and probes every few seconds are not worth a line each.
            log_config=None,
            access_log=False,
            # A consumer that failed to start must end the process, not leave an HTTP server without it.
            lifespan="on",
        )
    )
    # uvicorn takes SIGTERM and SIGINT before the app starts; a service still waiting for its servers
    # must see them too, or it would only stop once the servers answer.
    service.stop_requested = lambda: server.should_exit
    service.request_stop = partial(setattr, server, "should_exit", True)
    await server.serve()
    return server.started and not service.startup_abandoned
