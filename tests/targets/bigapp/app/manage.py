#!/usr/bin/env python
"""Django's command line for bigapp. DJANGO_SETTINGS_MODULE comes from the deployment."""

import sys

from django.core.management import execute_from_command_line

if __name__ == "__main__":
    execute_from_command_line(sys.argv)
