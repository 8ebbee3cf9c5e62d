"""pytest set-up for the Nova functional tests (run by `make test-nova`).

Order matters: Nova's functional tests need eventlet's monkey patching before
anything else imports threading, socket or time, as nova.tests.functional
does for stestr. pytest imports this file before any test module.
"""

import os
import sys

import nova.monkey_patch  # noqa: F401  (first: eventlet monkey patching)

# Nova's API loads its paste pipeline from [wsgi] api_paste_config; the file
# pip installs is in the environment's etc/nova/, not where Nova looks by
# default (a source checkout's etc/).
os.environ.setdefault(
    "OS_WSGI__API_PASTE_CONFIG",
    os.path.join(sys.prefix, "etc", "nova", "api-paste.ini"))
