"""The image's HEALTHCHECK: exit 0 when taxmeter's /healthz answers 200.

The slim base image has no curl; the standard library is enough.
"""

import os
import sys
import urllib.request

URL = os.environ.get("TAXMETER_HEALTH_URL", "http://127.0.0.1:9464/healthz")

try:
    with urllib.request.urlopen(URL, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as error:
    print(f"taxmeter healthcheck: {URL}: {error}", file=sys.stderr)
    sys.exit(1)
