# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509
from ansible_collections.theprotocol.operator.plugins.modules import svid_info

HOUR = datetime.timedelta(hours=1)


@pytest.fixture(scope='module')
def live(pki):
    """A PKI valid around the real current time (main() reads the clock)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    root_key = pki.make_key()
    root = pki.make_cert(root_key, 'root', ca=True, not_before=now - 24 * HOUR, not_after=now + 240 * HOUR)
    int_key = pki.make_key()
    inter = pki.make_cert(int_key, 'intermediate', issuer=(root, root_key), ca=True,
                          not_before=now - 2 * HOUR, not_after=now + 48 * HOUR)
    leaf_key = pki.make_key()
    leaf = pki.make_cert(leaf_key, None, issuer=(inter, int_key), uris=[pki.registry_id],
                         not_before=now - HOUR, not_after=now + HOUR)
    return dict(now=now, root=root, root_key=root_key, inter=inter, int_key=int_key, leaf=leaf, leaf_key=leaf_key)


def write_files(pki, directory, leaf, key, chain=(), bundle=(), names=('svid.pem', 'svid_key.pem', 'bundle.pem')):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / names[0]).write_bytes(pki.cert_pem(leaf, *chain))
    key_bytes = key if isinstance(key, bytes) else pki.key_pem(key)
    (directory / names[1]).write_bytes(key_bytes)
    (directory / names[2]).write_bytes(pki.cert_pem(*bundle))
    return key_bytes


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            svid_info.main()
    out = capsys.readouterr().out
    return info.value.code, json.loads(out), out


def assert_no_key_material(out, key_bytes):
    assert 'PRIVATE KEY' not in out
    for line in key_bytes.decode('ascii').splitlines()[1:-1]:
        assert line not in out


# ----------------------------------------------------------------------------- main() end to end

def test_main_healthy(pki, live, tmp_path, capsys):
    key_bytes = write_files(pki, tmp_path / 'certs', live['leaf'], live['leaf_key'], [live['inter']], [live['root']])
    rc, result, out = run_main(capsys, {'path': str(tmp_path / 'certs'), 'expected_spiffe_id': pki.registry_id,
                                        'min_remaining_seconds': 600})
    assert rc == 0
    assert result['changed'] is False
    assert result['valid'] is True, result['problems']
    assert result['problems'] == []
    assert result['spiffe_id'] == pki.registry_id
    assert result['trust_domain'] == 'example.com'
    assert result['spiffe_path'] == '/service/registry-acme'
    assert result['serial'] == format(live['leaf'].serial_number, 'x')
    assert result['not_before'] == _x509.isoformat(live['now'] - HOUR)
    assert result['not_after'] == _x509.isoformat(live['now'] + HOUR)
    assert 3000 < result['remaining_seconds'] <= 3600
    assert result['expired'] is False and result['not_yet_valid'] is False
    assert result['remaining_sufficient'] is True
    assert result['chain_valid'] is True and result['chain_error'] is None
    assert result['key_matches'] is True
    assert result['digital_signature'] is True
    assert result['expected_spiffe_id_matches'] is True
    assert result['bundle_ca_count'] == 1
    assert result['intermediate_count'] == 1
    assert result['certificate']['spiffe_id'] == pki.registry_id
    assert_no_key_material(out, key_bytes)


def test_main_check_mode_and_custom_names(pki, live, tmp_path, capsys):
    names = ('cert.pem', 'key.pem', 'ca.pem')
    key_bytes = write_files(pki, tmp_path, live['leaf'], live['leaf_key'], [live['inter']],
                            [pki.other_root, live['root']], names=names)
    rc, result, out = run_main(capsys, {'path': str(tmp_path), 'svid_file': names[0], 'key_file': names[1],
                                        'bundle_file': names[2], '_ansible_check_mode': True})
    assert rc == 0
    assert result['changed'] is False
    assert result['valid'] is True
    assert result['bundle_ca_count'] == 2
    assert result['expected_spiffe_id_matches'] is None
    assert_no_key_material(out, key_bytes)


def test_main_reports_findings_without_failing(pki, live, tmp_path, capsys):
    # Wrong key, wrong bundle, unexpected ID and too little time left: all reported, none raised.
    key_bytes = write_files(pki, tmp_path, live['leaf'], pki.mismatched_key, [live['inter']], [pki.other_root])
    rc, result, out = run_main(capsys, {'path': str(tmp_path),
                                        'expected_spiffe_id': 'spiffe://example.com/service/registry-other',
                                        'min_remaining_seconds': 7200})
    assert rc == 0
    assert result.get('failed') is not True
    assert result['valid'] is False
    assert result['key_matches'] is False
    assert result['chain_valid'] is False
    assert 'does not lead to the bundle' in result['chain_error']
    assert result['expected_spiffe_id_matches'] is False
    assert result['remaining_sufficient'] is False
    problems = ' | '.join(result['problems'])
    assert 'not the expected spiffe://example.com/service/registry-other' in problems
    assert 'key does not belong' in problems
    assert 'less than the required 7200 s' in problems
    assert len(result['problems']) == 4
    assert_no_key_material(out, key_bytes)


@pytest.mark.parametrize('args, message', [
    ({'min_remaining_seconds': -1}, 'min_remaining_seconds must be 0 or more'),
    ({'expected_spiffe_id': 'https://example.com/x'}, 'Option expected_spiffe_id: .*not a SPIFFE ID'),
    ({'svid_file': 'nope.pem'}, r'The SVID file .*nope\.pem does not exist'),
    ({'key_file': 'nope.pem'}, r'The SVID key file .*nope\.pem does not exist'),
    ({'bundle_file': 'nope.pem'}, r'The trust bundle file .*nope\.pem does not exist'),
    ({'bundle_file': 'adir'}, r'Cannot read the trust bundle file .*adir: Is a directory'),
    ({'svid_file': 'svid_key.pem'}, r'The SVID file .*svid_key\.pem contains no PEM certificate'),
    ({'key_file': 'svid.pem'}, r'The SVID key file .*svid\.pem contains no PEM private key'),
])
def test_main_bad_input_fails(pki, live, tmp_path, capsys, args, message):
    key_bytes = write_files(pki, tmp_path, live['leaf'], live['leaf_key'], [live['inter']], [live['root']])
    (tmp_path / 'adir').mkdir()
    rc, result, out = run_main(capsys, dict({'path': str(tmp_path)}, **args))
    assert rc == 1
    assert result['failed'] is True
    assert re.search(message, result['msg']), result['msg']
    assert_no_key_material(out, key_bytes)


def test_main_path_not_a_directory(tmp_path, capsys):
    rc, result, dummy = run_main(capsys, {'path': str(tmp_path / 'missing')})
    assert rc == 1
    assert 'is not a directory' in result['msg']


def test_main_missing_cryptography(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_x509, 'HAS_CRYPTOGRAPHY', False)
    monkeypatch.setattr(_x509, 'CRYPTOGRAPHY_IMP_ERR', 'Traceback: ImportError')
    rc, result, dummy = run_main(capsys, {'path': str(tmp_path)})
    assert rc == 1
    assert 'cryptography >= 38.0' in result['msg']


def test_main_encrypted_key(pki, live, tmp_path, capsys):
    from cryptography.hazmat.primitives import serialization
    enc = live['leaf_key'].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b'secret-pass'))
    write_files(pki, tmp_path, live['leaf'], enc, [live['inter']], [live['root']])
    rc, result, out = run_main(capsys, {'path': str(tmp_path)})
    assert rc == 1
    assert 'is encrypted' in result['msg']
    assert_no_key_material(out, enc)


# ----------------------------------------------------------------------------- inspect_svid() on fixed time

def _inspect(pki, leaf, key, chain, bundle, **kwargs):
    return svid_info.inspect_svid(pki.cert_pem(leaf, *chain), pki.key_pem(key), pki.cert_pem(*bundle),
                                  now=kwargs.pop('now', pki.now), **kwargs)


def test_inspect_expired(pki):
    r = _inspect(pki, pki.expired_leaf, pki.mismatched_key, [pki.intermediate], [pki.root])
    assert r['expired'] is True and r['remaining_seconds'] == -3600
    assert r['remaining_sufficient'] is False
    assert r['chain_valid'] is False and 'expired at' in r['chain_error']
    # The min_remaining problem is not repeated on top of the expiry.
    assert not any('less than the required' in p for p in r['problems'])


def test_inspect_not_yet_valid(pki):
    r = _inspect(pki, pki.future_leaf, pki.mismatched_key, [pki.intermediate], [pki.root])
    assert r['not_yet_valid'] is True and r['remaining_sufficient'] is False
    assert 'not valid before' in r['chain_error']


def test_inspect_wrong_trust_domain(pki):
    r = _inspect(pki, pki.wrong_td_leaf, pki.mismatched_key, [pki.intermediate], [pki.root],
                 expected_spiffe_id=pki.registry_id)
    assert r['trust_domain'] == 'other.org'
    assert r['chain_valid'] is True
    assert r['expected_spiffe_id_matches'] is False
    assert r['valid'] is False


def test_inspect_not_an_svid(pki):
    key = pki.make_key()
    leaf = pki.make_cert(key, 'plain', issuer=(pki.intermediate, pki.int_key), key_usage='no_sign')
    r = _inspect(pki, leaf, key, [pki.intermediate], [pki.root], expected_spiffe_id=pki.registry_id)
    assert r['spiffe_id'] is None and r['trust_domain'] is None
    assert r['digital_signature'] is False
    assert r['expected_spiffe_id_matches'] is False
    problems = ' | '.join(r['problems'])
    assert 'no URI SAN' in problems and 'digitalSignature' in problems and 'carries no SPIFFE ID' in problems


def test_inspect_ca_as_leaf(pki):
    r = _inspect(pki, pki.intermediate, pki.int_key, [], [pki.root])
    assert any('must have CA:FALSE' in p for p in r['problems'])


def test_inspect_default_now(pki, live):
    r = svid_info.inspect_svid(pki.cert_pem(live['leaf'], live['inter']), pki.key_pem(live['leaf_key']),
                               pki.cert_pem(live['root']))
    assert r['valid'] is True


def test_inspect_unusable_input(pki):
    with pytest.raises(_x509.X509Error, match='The custom bundle contains no PEM certificate'):
        svid_info.inspect_svid(pki.cert_pem(pki.leaf), pki.key_pem(pki.leaf_key), b'',
                               labels=('a', 'b', 'custom bundle'))


def test_module_as_script(pki, live, tmp_path):
    """Run the module file the way a target runs it: a separate interpreter with an args file."""
    key_bytes = write_files(pki, tmp_path / 'certs', live['leaf'], live['leaf_key'], [live['inter']], [live['root']])
    args = tmp_path / 'args.json'
    args.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': {'path': str(tmp_path / 'certs'),
                                                        'expected_spiffe_id': pki.registry_id}}))
    proc = subprocess.run([sys.executable, svid_info.__file__, str(args)], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result['valid'] is True and result['changed'] is False
    assert result['expected_spiffe_id_matches'] is True
    assert_no_key_material(proc.stdout + proc.stderr, key_bytes)
