# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""incident_evidence: input checks, and one collection over a fake Docker client with real
certificates and an env file, proving no secret value leaves the module."""

from __future__ import annotations

import datetime
import json
import os
import types

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.theprotocol.operator.plugins.modules import incident_evidence as mod

SECRET = 'Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0'
ENV = ('OPERATOR_NAME=acme\nREGISTRY_DID=did:web:acme.example.com\nPOSTGRES_PASSWORD=%s\n'
       'REDIS_PASSWORD=redis-secret-0123456789\nINTERNAL_API_KEY=iak-0123456789abcdef\n' % SECRET)


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            mod.main()
    out = capsys.readouterr().out
    return info.value.code, json.loads(out), out


@pytest.mark.parametrize('args, message', [
    ({'registry_name': 'Bad Name', 'operator_name': 'acme'}, 'compose project name'),
    ({'registry_name': 'acme', 'operator_name': 'Acme!'}, 'operator name'),
    ({'registry_name': 'acme', 'operator_name': 'acme', 'log_lines': 0}, 'log_lines must be 1 or more'),
    ({'registry_name': 'acme', 'operator_name': 'acme', 'federation_port': 70000}, 'federation_port'),
])
def test_bad_input_fails_before_docker(capsys, monkeypatch, args, message):
    monkeypatch.setattr(mod.docker, 'DockerClient', lambda **kw: pytest.fail('docker reached'))
    code, result, dummy = run_main(capsys, args)
    assert code == 1 and result['failed'] and message in result['msg']


class FakeContainer:
    def __init__(self, name, attrs, log):
        self.name, self.attrs, self._log = name, attrs, log

    def logs(self, **kwargs):
        return self._log.encode()

    def exec_run(self, cmd):
        if cmd[-1] == 'healthcheck':
            return types.SimpleNamespace(exit_code=0, output=b'Agent is healthy.\n')
        return types.SimpleNamespace(exit_code=0, output=b'1.13.3\n')


class NotFound(Exception):
    pass


def live_leaf(pki, hours=1):
    """An SVID leaf valid around the real current time (the module reads the clock)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = pki.make_key()
    ca = pki.make_cert(key, 'root', ca=True, not_before=now - datetime.timedelta(days=1),
                       not_after=now + datetime.timedelta(days=1))
    return pki.make_cert(pki.make_key(), None, issuer=(ca, key), uris=[pki.registry_id],
                         not_before=now - datetime.timedelta(hours=1), not_after=now + datetime.timedelta(hours=hours))


def fake_client(tmp_path, pki):
    volume = tmp_path / 'certs'
    data = volume / '..2026_11_25'
    data.mkdir(parents=True)
    (data / 'svid.pem').write_bytes(pki.cert_pem(live_leaf(pki)))
    os.symlink('..2026_11_25', str(volume / '..data'))
    os.symlink('..data/svid.pem', str(volume / 'svid.pem'))
    containers = {}
    for service in mod.inc.SERVICES:
        log = '2026-11-25T20:00:00Z started with POSTGRES_PASSWORD=%s\n' % SECRET
        if service == 'registry':
            log += '2026-11-25T20:00:01Z GET /x 403 forbidden password %s\n' % SECRET
        containers['acme-%s' % service] = FakeContainer('acme-%s' % service, {
            'Name': '/acme-%s' % service, 'Image': 'sha256:1', 'Config': {'Image': 'img', 'Env': ['X=%s' % SECRET]},
            'State': {'Status': 'running', 'Running': True, 'StartedAt': '2026-11-25T20:00:00Z'}}, log)
    client = types.SimpleNamespace(
        containers=types.SimpleNamespace(get=lambda name: containers[name]),
        images=types.SimpleNamespace(get=lambda ref: types.SimpleNamespace(attrs={'RepoDigests': ['img@sha256:1']})),
        volumes=types.SimpleNamespace(get=lambda name: types.SimpleNamespace(attrs={'Mountpoint': str(volume)})),
        version=lambda: {'Version': '20.10.24', 'ApiVersion': '1.41'},
        ping=lambda: True,
        close=lambda: None,
    )
    return client


def test_collect_redacts_every_secret(capsys, monkeypatch, tmp_path, pki):
    stack = tmp_path / 'stack'
    (stack / 'spire').mkdir(parents=True)
    (stack / '.env.operator').write_text(ENV)
    (stack / 'spire' / 'x509pop.crt').write_bytes(pki.cert_pem(live_leaf(pki, 24)))
    client = fake_client(tmp_path, pki)
    monkeypatch.setattr(mod.docker, 'DockerClient', lambda **kw: client)
    monkeypatch.setattr(mod, '_served_der', lambda *a: (None, 'connection refused'))
    code, result, out = run_main(capsys, {'registry_name': 'acme', 'operator_name': 'acme',
                                          'stack_dir': str(stack), 'federation_port': 1})
    assert code == 0, result
    assert SECRET not in out and 'redis-secret-0123456789' not in out and 'iak-0123456789abcdef' not in out
    assert result['redacted_values'] == 3
    assert result['auth_failures'][0]['line'] == 'GET /x 403 forbidden password <redacted>'
    assert result['containers']['db']['image_digests'] == ['img@sha256:1']
    assert result['svid']['spiffe_id'] == pki.registry_id and not result['svid']['stale']
    # nginx does not answer: a local fault of nginx-federation only.
    assert result['classification']['category'] == 'local_fault'
    assert 'nginx_federation' in result['classification']['faults']
