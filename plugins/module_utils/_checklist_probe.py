# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""I/O of the security checklist: TLS/HTTP probes and file reads (private to this collection).

Standard library only. Nothing here returns or logs a private key or a secret value.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import shutil
import socket
import ssl
import stat
import tempfile

# TLS alerts with which a server refuses a client certificate during the handshake.
_TLS_REFUSALS = ('CERTIFICATE_REQUIRED', 'HANDSHAKE', 'UNKNOWN_CA', 'BAD_CERTIFICATE', 'CERTIFICATE_UNKNOWN',
                 'ACCESS_DENIED', 'DECRYPT_ERROR')


def tls_context(client_cert=None, client_key=None):
    """A TLS client context that does not verify the server (like ``curl -k``), optionally with a client cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


def tls_context_pem(cert_pem, key_pem):
    """Like tls_context, with the client certificate and key given as PEM bytes.

    ``ssl`` loads them only from files: they go to a private directory (0700, files 0600) that is
    removed as soon as the context holds them.
    """
    directory = tempfile.mkdtemp(prefix='checklist-probe-')
    try:
        paths = []
        for name, data in (('cert.pem', cert_pem), ('key.pem', key_pem)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
            paths.append(path)
        return tls_context(paths[0], paths[1])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _reason(body):
    """The ``error`` of a JSON error body (short, printable), for evidence; never anything else."""
    try:
        value = json.loads(body.decode('utf-8')).get('error')
    except (ValueError, AttributeError):
        return None
    if not isinstance(value, str):
        return None
    return ''.join(c for c in value[:100] if c.isprintable()) or None


def https_request(host, port, method, path, context, timeout=5.0, headers=None, body=None):
    """One HTTPS request. Returns dict(status, peer_der, error, tls_refused); never raises for I/O."""
    out = dict(method=method, path=path, status=None, error=None, tls_refused=False, peer_der=None, reason=None)
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        conn.connect()
        out['peer_der'] = conn.sock.getpeercert(binary_form=True)
        conn.request(method, path, body=body, headers=dict(headers or {}, **{'User-Agent': 'theprotocol-checklist'}))
        response = conn.getresponse()
        data = response.read(65536)
        out['status'] = response.status
        if response.status >= 400:
            out['reason'] = _reason(data)
    except ssl.SSLError as exc:
        reason = getattr(exc, 'reason', None) or type(exc).__name__
        out['error'] = 'TLS error: %s' % reason
        out['tls_refused'] = any(word in str(reason).upper() for word in _TLS_REFUSALS)
    except ConnectionRefusedError:
        out['error'] = 'connection refused (is the port published and nginx running?)'
    except (socket.timeout, TimeoutError):
        out['error'] = 'timed out after %.0f s' % timeout
    except (OSError, http.client.HTTPException) as exc:
        out['error'] = '%s: %s' % (type(exc).__name__, getattr(exc, 'strerror', None) or exc)
    finally:
        conn.close()
    return out


def read_file(path, limit=1024 * 1024):
    """Bytes of ``path`` or None when missing/unreadable."""
    try:
        with open(path, 'rb') as handle:
            return handle.read(limit)
    except OSError:
        return None


def lstat_info(path):
    """dict(exists, is_symlink, is_file, mode, uid, gid) without following a symlink."""
    try:
        info = os.lstat(path)
    except OSError:
        return dict(exists=False)
    return dict(exists=True, is_symlink=stat.S_ISLNK(info.st_mode), is_file=stat.S_ISREG(info.st_mode),
                mode=stat.S_IMODE(info.st_mode), uid=info.st_uid, gid=info.st_gid)


def mtime(path):
    """Modification time of ``path`` itself (not a symlink target) as aware UTC, or None."""
    try:
        return datetime.datetime.fromtimestamp(os.lstat(path).st_mtime, datetime.timezone.utc)
    except OSError:
        return None
