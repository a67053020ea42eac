# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""SPIFFE ID allow-lists of nginx-federation (private to this collection).

A pattern is a SPIFFE ID whose path may hold ``*`` (any characters within one path segment)
and ``**`` (any characters across segments): ``spiffe://example.com/service/registry-*``.
The trust domain is literal. Patterns become anchored PCRE regexes for an nginx ``map``; the
characters a valid pattern can hold (SPIFFE's own: letters, digits, ``.``, ``-``, ``_``, ``/``)
need no quoting in nginx or JSON. Pure functions, no I/O.
"""

from __future__ import annotations

import re

# SPIFFE ID grammar (SPIFFE ID standard, sections 2.1 and 2.2), plus '*' in path segments.
_PATTERN_RE = re.compile(r'spiffe://([a-z0-9._-]+)((?:/[A-Za-z0-9._*-]+)+)')
_ID_RE = re.compile(r'spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)+')
_SEGMENT = '[A-Za-z0-9._-]*'
_ANY = '[A-Za-z0-9._/-]*'
MAX_LENGTH = 2048


class AllowListError(ValueError):
    """An unusable allow-list; the message names every bad entry."""


def pattern_problem(pattern):
    """Why ``pattern`` is not a valid SPIFFE ID pattern, or None."""
    if not isinstance(pattern, str):
        return '%r is not a string' % (pattern,)
    shown = pattern if len(pattern) <= 80 else pattern[:77] + '...'
    if len(pattern) > MAX_LENGTH:
        return '%r is longer than %d characters' % (shown, MAX_LENGTH)
    match = _PATTERN_RE.fullmatch(pattern)
    if not match:
        return ('%r is not spiffe://<trust domain>/<path> (trust domain: a-z 0-9 . - _; path segments: '
                'A-Z a-z 0-9 . - _ and the wildcards * and **)' % shown)
    segments = match.group(2).split('/')[1:]
    if any(s in ('.', '..') for s in segments):
        return '%r has a "." or ".." path segment' % shown
    if '***' in pattern:
        return '%r has "***" (use * within a segment or ** across segments)' % shown
    return None


def validate(patterns):
    """The list of patterns, or AllowListError naming each bad one (an empty list is refused)."""
    if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)):
        raise AllowListError('the federation allow-list must be a list of SPIFFE ID patterns, got %s'
                             % type(patterns).__name__)
    if not patterns:
        raise AllowListError('the federation allow-list is empty: no peer could reach the federation endpoints '
                             '(the default is spiffe://<trust domain>/service/registry-*)')
    problems = [p for p in (pattern_problem(x) for x in patterns) if p]
    if problems:
        raise AllowListError('invalid federation allow-list entries: %s' % '; '.join(problems))
    return list(patterns)


def pattern_regex(pattern):
    """Anchored regex (PCRE and Python) of one valid pattern."""
    out = []
    for token in re.findall(r'\*\*|\*|[^*]+', pattern):
        if token == '**':
            out.append(_ANY)
        elif token == '*':
            out.append(_SEGMENT)
        else:
            out.append(token.replace('.', r'\.'))
    return '^%s$' % ''.join(out)


def regexes(patterns):
    """Regexes of a validated allow-list, in order, duplicates dropped."""
    seen = []
    for pattern in validate(patterns):
        regex = pattern_regex(pattern)
        if regex not in seen:
            seen.append(regex)
    return seen


def is_spiffe_id(value):
    """Whether ``value`` is a well-formed workload SPIFFE ID."""
    return (isinstance(value, str) and len(value) <= MAX_LENGTH and _ID_RE.fullmatch(value) is not None
            and not any(s in ('.', '..') for s in value.split('/')[3:]))


def allowed(patterns, spiffe_id):
    """Whether nginx-federation lets ``spiffe_id`` through with this allow-list."""
    if not is_spiffe_id(spiffe_id):
        return False
    return any(re.fullmatch(r[1:-1], spiffe_id) for r in regexes(patterns))
