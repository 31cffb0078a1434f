"""``manage.py process_queue``: the shop's worker process, run from the web image with another command."""

import logging
import signal
import threading

from django.core.management.base import BaseCommand
from django.db import DatabaseError, connection

from catalog.processing import process_batch

logger = logging.getLogger("catalog.worker")


class Command(BaseCommand):
    help = "Process pending Things in batches until SIGTERM or SIGINT, which end it after the current pass."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=2.0, help="seconds to sleep between passes (default 2)")
        parser.add_argument("--batch", type=int, default=100, help="most Things one pass marks (default 100)")

    def handle(self, *args, interval: float, batch: int, **options) -> None:
        # An Event rather than time.sleep: a signal wakes Event.wait at once, while
        # sleep would finish its interval first and delay the container's stop.
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        logger.info("worker started: batch %d, interval %.1fs", batch, interval)
        while not stopping.is_set():
            try:
                processed = process_batch(batch)
            except DatabaseError as exc:
                # A database restart must not end the worker: drop the broken connection, try next pass.
                logger.warning("pass failed: %s", str(exc).strip())
                connection.close()
                processed = 0
            else:
                logger.info("pass: processed %d thing(s)", processed)
            # A full batch means more are waiting: go again at once.
            if processed < batch:
                stopping.wait(interval)
        logger.info("worker stopped by signal")
