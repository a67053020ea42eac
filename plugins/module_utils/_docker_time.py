# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Docker's timestamps (private to this collection): ``docker logs --timestamps`` prefixes and the
``StartedAt``/``FinishedAt`` of ``docker inspect``, RFC 3339 with up to nanoseconds, and how evidence
shows them (milliseconds). No I/O."""

from __future__ import annotations

import datetime
import re

# A timestamp, and with ``docker logs --timestamps`` the rest of the line (group 4).
DOCKER_TS_RE = re.compile(r'^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})\s?(.*)$')


def parse_timestamp(text):
    """An aware UTC datetime from Docker's RFC 3339 timestamps (nanoseconds allowed); None if unusable
    (not a string, not a timestamp, or Docker's zero time 0001-01-01 of a container never started)."""
    if not text or not isinstance(text, str) or text.startswith('0001-01-01'):
        return None
    match = DOCKER_TS_RE.match(text.strip())
    if not match:
        return None
    base, fraction, zone, dummy = match.groups()
    micro = int((fraction or '0')[:6].ljust(6, '0'))
    try:
        value = datetime.datetime.strptime(base, '%Y-%m-%dT%H:%M:%S').replace(microsecond=micro)
    except ValueError:
        return None
    if zone == 'Z':
        return value.replace(tzinfo=datetime.timezone.utc)
    sign = 1 if zone[0] == '+' else -1
    offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return (value - sign * offset).replace(tzinfo=datetime.timezone.utc)


def isoformat_ms(value):
    """ISO-8601 UTC with a 'Z' suffix and millisecond precision (a naive datetime is taken as UTC); None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    value = value.astimezone(datetime.timezone.utc)
    return value.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (value.microsecond // 1000)
