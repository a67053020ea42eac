# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""SPIRE server CLI helpers for registration entries (private to this collection).

Pure functions: they build ``spire-server`` argument vectors and parse its
``-output json`` answers (protojson with proto field names and unpopulated
fields, as printed by SPIRE v1.x ``pkg/common/cliprinter``).  The human
("pretty") output is never parsed.  No Ansible imports; every error is a
:class:`SpireCliError` with a message meant for the operator.
"""

from __future__ import annotations

import json

DEFAULT_SERVER_BIN = '/opt/spire/bin/spire-server'
SERVER_ID_PATH = '/spire/server'

# gRPC status codes the entry API returns in batch results (google.golang.org/grpc/codes).
GRPC_CODES = {
    0: 'OK', 1: 'Canceled', 2: 'Unknown', 3: 'InvalidArgument', 4: 'DeadlineExceeded', 5: 'NotFound',
    6: 'AlreadyExists', 7: 'PermissionDenied', 8: 'ResourceExhausted', 9: 'FailedPrecondition', 10: 'Aborted',
    11: 'OutOfRange', 12: 'Unimplemented', 13: 'Internal', 14: 'Unavailable', 15: 'DataLoss', 16: 'Unauthenticated',
}

# Fields this collection manages; every other field of an existing entry is carried over on update.
MANAGED_FIELDS = ('parent_id', 'selectors', 'x509_svid_ttl', 'dns_names')


class SpireCliError(Exception):
    """The one error type of this module; its message is meant for the operator."""


# --------------------------------------------------------------------------- values

def server_id(trust_domain):
    """SPIFFE ID of the SPIRE server, the parent of node entries (``entry create -node``)."""
    return 'spiffe://%s%s' % (trust_domain, SERVER_ID_PATH)


def trust_domain_of(spiffe_id):
    """Trust domain name of a ``spiffe://`` ID (no further validation: the server validates)."""
    if not isinstance(spiffe_id, str) or not spiffe_id.startswith('spiffe://'):
        raise SpireCliError('%r is not a SPIFFE ID: expected spiffe://<trust-domain>/<path>.' % (spiffe_id,))
    trust_domain = spiffe_id[len('spiffe://'):].split('/', 1)[0]
    if not trust_domain:
        raise SpireCliError('The SPIFFE ID %r has no trust domain.' % spiffe_id)
    return trust_domain


def validate_selector(selector):
    """Return ``selector`` when it has the ``type:value`` form the CLI expects."""
    if not isinstance(selector, str):
        raise SpireCliError('The selector %r is not a string; use the form type:value, e.g. unix:uid:0.' % (selector,))
    kind, sep, value = selector.partition(':')
    if not sep or not kind or not value or kind.strip() != kind:
        raise SpireCliError(
            'The selector %r is invalid: use the form type:value, e.g. '
            'docker:label:com.docker.compose.service:cert-writer or x509pop:subject:cn:operator-acme.' % selector)
    return selector


def _id_to_str(value):
    if not value:
        return None
    if isinstance(value, str):
        return value
    trust_domain = value.get('trust_domain') or ''
    if not trust_domain:
        return None
    return 'spiffe://%s%s' % (trust_domain, value.get('path') or '')


def _int(value):
    # protojson prints int64 fields as strings and int32 fields as numbers.
    if value in (None, ''):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SpireCliError('Unexpected number %r in the spire-server JSON output.' % (value,))


def normalize_entry(raw):
    """A registration entry from ``-output json`` as a flat dict with string SPIFFE IDs."""
    if not isinstance(raw, dict):
        raise SpireCliError('Unexpected entry in the spire-server JSON output: %r.' % (raw,))
    selectors = []
    for sel in raw.get('selectors') or []:
        selectors.append('%s:%s' % (sel.get('type', ''), sel.get('value', '')))
    return {
        'id': raw.get('id') or '',
        'spiffe_id': _id_to_str(raw.get('spiffe_id')),
        'parent_id': _id_to_str(raw.get('parent_id')),
        'selectors': sorted(selectors),
        'x509_svid_ttl': _int(raw.get('x509_svid_ttl')),
        'jwt_svid_ttl': _int(raw.get('jwt_svid_ttl')),
        'dns_names': list(raw.get('dns_names') or []),
        'federates_with': list(raw.get('federates_with') or []),
        'admin': bool(raw.get('admin')),
        'downstream': bool(raw.get('downstream')),
        'store_svid': bool(raw.get('store_svid')),
        'expires_at': _int(raw.get('expires_at')),
        'hint': raw.get('hint') or '',
        'revision_number': _int(raw.get('revision_number')),
        'created_at': _int(raw.get('created_at')),
    }


def desired_entry(spiffe_id, parent_id, selectors, x509_svid_ttl=0, dns_names=None):
    """The managed part of an entry, normalized like :func:`normalize_entry`."""
    for sel in selectors or []:
        validate_selector(sel)
    if not selectors:
        raise SpireCliError('At least one selector is required for the entry %s.' % spiffe_id)
    if x509_svid_ttl is None or x509_svid_ttl < 0:
        raise SpireCliError('x509_svid_ttl must be 0 (server default) or a positive number of seconds, got %r.'
                            % (x509_svid_ttl,))
    return {
        'spiffe_id': spiffe_id,
        'parent_id': parent_id,
        'selectors': sorted(set(selectors)),
        'x509_svid_ttl': int(x509_svid_ttl),
        'dns_names': list(dns_names or []),
    }


# --------------------------------------------------------------------------- parsing

def _load_json(text, what):
    text = (text or '').strip()
    if not text:
        raise SpireCliError('spire-server %s printed nothing on stdout; expected JSON (-output json).' % what)
    try:
        data = json.loads(text)
    except ValueError:
        raise SpireCliError('spire-server %s did not print JSON (-output json): %s' % (what, text[:300]))
    if isinstance(data, dict) and set(data) == {'error'}:
        raise SpireCliError('spire-server %s failed: %s' % (what, data['error']))
    if not isinstance(data, dict):
        raise SpireCliError('spire-server %s printed unexpected JSON: %s' % (what, text[:300]))
    return data


def parse_show(text):
    """Entries of ``entry show -output json`` (a ListEntriesResponse)."""
    data = _load_json(text, 'entry show')
    return [normalize_entry(e) for e in data.get('entries') or []]


def parse_batch(text, what):
    """The single result entry of ``entry create|update|delete -output json``.

    In JSON mode the CLI exits 0 even when the server refused the entry, so the
    per-entry gRPC status is the only reliable outcome.
    """
    data = _load_json(text, what)
    results = data.get('results')
    if not isinstance(results, list) or len(results) != 1:
        raise SpireCliError('spire-server %s printed %r results; expected exactly one.'
                            % (what, len(results) if isinstance(results, list) else results))
    result = results[0] or {}
    status = result.get('status') or {}
    code = _int(status.get('code'))
    if code != 0:
        raise SpireCliError('spire-server %s was refused by the server: %s (code %s): %s'
                            % (what, GRPC_CODES.get(code, 'code %d' % code), code, status.get('message') or ''))
    entry = result.get('entry')
    return normalize_entry(entry) if isinstance(entry, dict) else {'id': result.get('id') or ''}


# --------------------------------------------------------------------------- planning

def differences(existing, desired):
    """Names of the managed fields where ``existing`` differs from ``desired``."""
    return [field for field in MANAGED_FIELDS if existing.get(field) != desired.get(field)]


def plan(entries, desired):
    """Decide what to do for ``desired`` given the entries with its SPIFFE ID and parent ID.

    Returns ``(action, entry, diffs)`` with action one of ``create``, ``update``, ``none``.
    Several existing entries for one SPIFFE ID and parent are an error: the caller cannot
    tell which one is meant, and never adds another.
    """
    matching = [e for e in entries
                if e.get('spiffe_id') == desired['spiffe_id'] and e.get('parent_id') == desired['parent_id']]
    if not matching:
        return 'create', None, list(MANAGED_FIELDS)
    if len(matching) > 1:
        exact = [e for e in matching if not differences(e, desired)]
        raise SpireCliError(
            'There are %d registration entries for %s with parent %s (IDs %s)%s; expected at most one. Delete the '
            'extra ones with "spire-server entry delete -entryID <id>" and run again.'
            % (len(matching), desired['spiffe_id'], desired['parent_id'], ', '.join(e['id'] for e in matching),
               ' of which %d already match' % len(exact) if exact else ''))
    entry = matching[0]
    diffs = differences(entry, desired)
    return ('update' if diffs else 'none'), entry, diffs


def predicted(entry, desired):
    """The entry as it will be after create/update (for check mode and diff)."""
    after = dict(entry or {'id': '', 'jwt_svid_ttl': 0, 'federates_with': [], 'admin': False, 'downstream': False,
                           'store_svid': False, 'expires_at': 0, 'hint': '', 'revision_number': 0,
                           'created_at': 0})
    after.update(desired)
    return after


# --------------------------------------------------------------------------- argv

def _base(server_bin, command, socket_path):
    argv = [server_bin or DEFAULT_SERVER_BIN] + command.split()
    if socket_path:
        argv += ['-socketPath', socket_path]
    return argv


def show_argv(server_bin, socket_path, spiffe_id=None, parent_id=None):
    argv = _base(server_bin, 'entry show', socket_path)
    if spiffe_id:
        argv += ['-spiffeID', spiffe_id]
    if parent_id:
        argv += ['-parentID', parent_id]
    return argv + ['-output', 'json']


def _entry_flags(desired):
    argv = ['-spiffeID', desired['spiffe_id']]
    for sel in desired['selectors']:
        argv += ['-selector', sel]
    if desired.get('x509_svid_ttl'):
        argv += ['-x509SVIDTTL', str(desired['x509_svid_ttl'])]
    for name in desired.get('dns_names') or []:
        argv += ['-dns', name]
    return argv


def create_argv(server_bin, socket_path, desired, node=False):
    argv = _base(server_bin, 'entry create', socket_path)
    if node:
        argv += ['-node']
    else:
        argv += ['-parentID', desired['parent_id']]
    return argv + _entry_flags(desired) + ['-output', 'json']


def update_argv(server_bin, socket_path, existing, desired):
    """``entry update`` replaces the whole entry: carry over the fields this collection does not manage."""
    argv = _base(server_bin, 'entry update', socket_path)
    argv += ['-entryID', existing['id'], '-parentID', desired['parent_id']] + _entry_flags(desired)
    if existing.get('jwt_svid_ttl'):
        argv += ['-jwtSVIDTTL', str(existing['jwt_svid_ttl'])]
    for td in existing.get('federates_with') or []:
        argv += ['-federatesWith', td]
    for flag in ('admin', 'downstream'):
        if existing.get(flag):
            argv += ['-%s' % flag]
    if existing.get('store_svid'):
        argv += ['-storeSVID']
    if existing.get('expires_at'):
        argv += ['-entryExpiry', str(existing['expires_at'])]
    if existing.get('hint'):
        argv += ['-hint', existing['hint']]
    return argv + ['-output', 'json']


def delete_argv(server_bin, socket_path, entry_id):
    return _base(server_bin, 'entry delete', socket_path) + ['-entryID', entry_id, '-output', 'json']
