# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""I/O of the security checklist: TLS/HTTP probes and file reads (private to this collection).

Standard library only. Nothing here returns or logs a private key or a secret value.
"""

from __future__ import annotations

import datetime
import http.client
import os
import socket
import ssl
import stat


def tls_context(client_cert=None, client_key=None):
    """A TLS client context that does not verify the server (like ``curl -k``), optionally with a client cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


def https_request(host, port, method, path, context, timeout=5.0, headers=None, body=None):
    """One HTTPS request. Returns dict(status, peer_der, error, tls_refused); never raises for I/O."""
    out = dict(method=method, path=path, status=None, error=None, tls_refused=False, peer_der=None)
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        conn.connect()
        out['peer_der'] = conn.sock.getpeercert(binary_form=True)
        conn.request(method, path, body=body, headers=dict(headers or {}, **{'User-Agent': 'theprotocol-checklist'}))
        response = conn.getresponse()
        response.read(65536)
        out['status'] = response.status
    except ssl.SSLError as exc:
        reason = getattr(exc, 'reason', None) or type(exc).__name__
        out['error'] = 'TLS error: %s' % reason
        out['tls_refused'] = 'CERTIFICATE_REQUIRED' in str(reason).upper() or 'HANDSHAKE' in str(reason).upper()
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
