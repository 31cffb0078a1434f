"""Scripts run INSIDE the candidate image (the target's own Python and Django), never imported by deploygate.

They are mounted into a one-off container of the candidate so that what is tested is
the image that will run. They print one ``DEPLOYGATE_RESULT <json>`` line for the host.
"""

from pathlib import Path

DJANGO_PROBE = Path(__file__).with_name("django_probe.py")
RESULT_MARKER = "DEPLOYGATE_RESULT "
