"""The payments service (service.py) under uvicorn, for the kill -9 test.

    python crash_server.py <database url> <port> <lease seconds>

With PAYMENTS_HANG=1 a POST of amount 999 hangs after its insert, inside its transaction.
"""

import asyncio
import sys

import uvicorn
from service import create_app, metadata
from support.runtime_service import create_database_engine

from microforge.runtime.idempotency.policy import IdempotencyPolicy


async def main(url: str, port: int, lease: float) -> None:
    engine = await create_database_engine(url, metadata)
    app = create_app(engine, IdempotencyPolicy(lease=lease, wait=0))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
