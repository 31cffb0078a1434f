"""``manage.py run_jobs``: bigapp's worker, run from the web image with another command."""

import logging
import signal
import threading

from django.core.management.base import BaseCommand
from django.db import DatabaseError, connection

from ops.processing import process_batch

logger = logging.getLogger("ops.worker")


class Command(BaseCommand):
    help = "Process pending jobs in batches until SIGTERM or SIGINT, which end it after the current pass."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between passes (default 2)")
        parser.add_argument("--batch", type=int, default=50, help="most jobs one pass takes (default 50)")

    def handle(self, *args, interval: float, batch: int, **options) -> None:
        stopping = threading.Event()  # a signal wakes Event.wait at once; time.sleep would finish first
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        logger.info("worker started: batch %d, interval %.1fs", batch, interval)
        while not stopping.is_set():
            try:
                processed = process_batch(batch)
            except DatabaseError as exc:
                logger.warning("pass failed: %s", str(exc).strip())
                connection.close()
                processed = 0
            else:
                logger.info("pass: processed %d job(s)", processed)
            if processed < batch:
                stopping.wait(interval)
        logger.info("worker stopped by signal")
