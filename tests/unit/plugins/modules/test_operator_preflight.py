# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509
from ansible_collections.theprotocol.operator.plugins.modules import operator_preflight

DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture(scope='module')
def live(pki):
    """A frame PKI valid around the real current time (main() reads the clock)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    root_key = pki.make_key()
    root = pki.make_cert(root_key, 'frame-root', ca=True, not_before=now - 30 * DAY, not_after=now + 365 * DAY)
    pop_key = pki.make_key()
    pop = pki.make_cert(pop_key, 'acme-host', issuer=(root, root_key), not_before=now - DAY, not_after=now + 30 * DAY)
    spire_ca = pki.make_cert(pki.make_key(), 'spire-ca', ca=True, uris=['spiffe://example.com'],
                             not_before=now - DAY, not_after=now + 7 * DAY)
    args = dict(operator_name='acme', registry_name='acme', trust_domain='example.com',
                registry_did='did:web:registry.acme.example', spire_server_address='spire.frame.example',
                spire_server_port=8081, x509pop_cert=pki.cert_pem(pop).decode(), x509pop_key=pki.key_pem(pop_key).decode(),
                x509pop_intermediates=pki.cert_pem(root).decode(), trust_bundle=pki.cert_pem(spire_ca).decode(),
                settings={'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': 'true'})
    return dict(now=now, pop=pop, pop_key=pop_key, root=root, root_key=root_key, args=args)


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            operator_preflight.main()
    out = capsys.readouterr()
    return info.value.code, json.loads(out.out), out.out + out.err


def assert_no_key_material(out, key_pem):
    assert 'PRIVATE KEY' not in out
    for line in key_pem.splitlines()[1:-1]:
        assert line not in out


def test_main_good(live, capsys):
    rc, result, out = run_main(capsys, live['args'])
    assert rc == 0, result
    assert result['changed'] is False
    assert result['problems'] == [] and result['valid'] is True
    assert result['registry_spiffe_id'] == 'spiffe://example.com/service/registry-acme'
    assert result['x509pop_agent_spiffe_id'] == _x509.x509pop_agent_spiffe_id('example.com', live['pop'])
    assert result['x509pop_not_after'] == _x509.isoformat(live['now'] + 30 * DAY)
    assert result['x509pop_remaining_days'] in (29, 30)
    assert result['trust_bundle_ca_count'] == 1
    assert result['trust_bundle_trust_domains'] == ['example.com']
    assert_no_key_material(out, live['args']['x509pop_key'])


def test_main_check_mode_and_defaults(live, capsys):
    args = dict(live['args'], _ansible_check_mode=True)
    del args['trust_domain'], args['spire_server_port'], args['x509pop_intermediates']
    rc, result, dummy = run_main(capsys, args)
    assert rc == 0 and result['changed'] is False and result['valid'] is True


def test_main_fails_with_every_problem(live, pki, capsys):
    other = pki.make_cert(pki.make_key(), 'spire-ca', ca=True, uris=['spiffe://other.org'],
                          not_before=live['now'] - DAY, not_after=live['now'] + DAY)
    args = dict(live['args'], operator_name='ACME', registry_did='acme', x509pop_key=pki.key_pem(pki.make_key()).decode(),
                x509pop_min_remaining_days=60, trust_bundle=pki.cert_pem(other).decode(),
                settings={'MINTING_AUTHORITY': 'enabled', 'EVENTSTORE_MTLS_REQUIRED': True})
    rc, result, out = run_main(capsys, args)
    assert rc == 1
    assert result['failed'] is True and result['changed'] is False
    assert result['valid'] is False
    assert len(result['problems']) == 6, result['problems']
    msg = result['msg']
    assert msg.startswith('Preflight found 6 problem(s) in the operator stack inputs; nothing was changed:\n1. ')
    for needle in ("operator name 'ACME' is invalid", "registry DID 'acme' is not a DID", 'MINTING_AUTHORITY',
                   'x509pop_key does not belong', 'in less than the required 60 day(s)', 'Trust domain mismatch'):
        assert needle in msg, needle
    # the facts are returned even on failure
    assert result['x509pop_agent_spiffe_id'] == _x509.x509pop_agent_spiffe_id('example.com', live['pop'])
    assert result['registry_spiffe_id'] is None
    assert_no_key_material(out, args['x509pop_key'])
    assert_no_key_material(out, live['args']['x509pop_key'])


def test_main_expired_and_not_yet_valid(live, pki, capsys):
    for not_before, not_after, needle in ((live['now'] - 10 * DAY, live['now'] - HOUR, 'expired at'),
                                          (live['now'] + HOUR, live['now'] + DAY, 'is not valid before')):
        cert = pki.make_cert(live['pop_key'], 'acme-host', issuer=(live['root'], live['root_key']),
                             not_before=not_before, not_after=not_after)
        rc, result, dummy = run_main(capsys, dict(live['args'], x509pop_cert=pki.cert_pem(cert).decode()))
        assert rc == 1
        assert len(result['problems']) == 1 and needle in result['problems'][0]


def test_main_bad_min_days(live, capsys):
    rc, result, dummy = run_main(capsys, dict(live['args'], x509pop_min_remaining_days=-1))
    assert rc == 1 and 'x509pop_min_remaining_days must be 0 or more' in result['msg']


def test_main_missing_cryptography(monkeypatch, live, capsys):
    monkeypatch.setattr(_x509, 'HAS_CRYPTOGRAPHY', False)
    monkeypatch.setattr(_x509, 'CRYPTOGRAPHY_IMP_ERR', 'Traceback: ImportError')
    rc, result, dummy = run_main(capsys, live['args'])
    assert rc == 1 and 'cryptography >= 38.0' in result['msg']


def test_module_as_script(live, tmp_path):
    args = tmp_path / 'args.json'
    args.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': dict(live['args'], operator_name='Bad Name',
                                                            _ansible_verbosity=4)}))
    proc = subprocess.run([sys.executable, operator_preflight.__file__, str(args)], capture_output=True, text=True,
                          check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result['problems'] == [result['msg'].split('\n1. ', 1)[1]]
    assert "operator name 'Bad Name' is invalid" in result['msg']
    assert_no_key_material(proc.stdout + proc.stderr, live['args']['x509pop_key'])


def test_main_hides_a_token_in_the_eventstore_url(live, capsys):
    """Issue 12: a URL with a token is refused, and neither the message nor the invocation shows the token."""
    for url in ('https://ops:hostile-token-12@es.example.com/api/v1/events/',
                'https://es.example.com/api/v1/events/?access_token=hostile-token-12'):
        args = dict(live['args'], settings=dict(live['args']['settings'], EVENTSTORE_URL=url))
        rc, result, out = run_main(capsys, args)
        assert rc == 1 and len(result['problems']) == 1, result
        assert 'eventstore_url' in result['msg']
        assert 'hostile-token-12' not in out


def test_main_checks_images_bind_address_and_extra_hosts(live, capsys):
    images = dict(spire_agent='r:5000/s:1', cert_writer='r:5000/c:1', nginx='r:5000/n:1', registry='r:5000/r:1',
                  postgres='postgres:15', redis='redis:7')
    rc, result, dummy = run_main(capsys, dict(live['args'], images=images, federation_bind_address='0.0.0.0',
                                              extra_hosts=['es.example.com:192.0.2.1']))
    assert rc == 0, result
    rc, result, dummy = run_main(capsys, dict(live['args'], images=dict(images, nginx='n:1\nprivileged: true'),
                                              federation_bind_address='0.0.0.0 ', extra_hosts=['es:x']))
    assert rc == 1 and len(result['problems']) == 3, result['problems']
    assert "images.nginx 'n:1\\nprivileged: true'" in result['msg']


def test_main_refuses_a_registry_the_frame_did_not_register(live, capsys):
    """Issue 16: onboarding.yml as the frame's operator_onboarding role writes it (registry acme-registry)."""
    onboarding = {'operator_name': 'acme', 'registry_name': 'acme-registry',
                  'agent': {'trust_domain': 'example.com', 'server_address': 'spire.frame.example', 'server_port': 8081},
                  'registry_spiffe_id': 'spiffe://example.com/service/registry-acme',
                  'x509pop_certificate_sha1_fingerprint': _x509.sha1_fingerprint(live['pop'])}
    rc, result, out = run_main(capsys, dict(live['args'], onboarding=onboarding))
    assert rc == 1 and result['valid'] is False
    assert len(result['problems']) == 1, result['problems']
    assert "for the compose project 'acme-registry'" in result['msg'] and "registry_name is 'acme'" in result['msg']
    assert result['onboarding_registration']['registry_name'] == 'acme-registry'
    assert_no_key_material(out, live['args']['x509pop_key'])
    rc, result, dummy = run_main(capsys, dict(live['args'], onboarding=onboarding, registry_name='acme-registry'))
    assert rc == 0 and result['valid'] is True
    assert result['x509pop_sha1_fingerprint'] == _x509.sha1_fingerprint(live['pop'])


def test_main_without_the_material_checks_the_rest(live, capsys):
    args = {k: v for k, v in live['args'].items() if k not in ('x509pop_cert', 'x509pop_key', 'trust_bundle')}
    rc, result, dummy = run_main(capsys, dict(args, check_onboarding_material=False))
    assert rc == 0 and result['valid'] is True and result['x509pop_not_after'] is None
    rc, result, dummy = run_main(capsys, dict(args, check_onboarding_material=False, registry_did='nope'))
    assert rc == 1 and len(result['problems']) == 1 and 'is not a DID' in result['problems'][0]
