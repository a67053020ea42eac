# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets
from ansible_collections.theprotocol.operator.plugins.modules import operator_env

SETTINGS = {'OPERATOR_NAME': 'acme', 'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': True}
SECRETS = ['POSTGRES_PASSWORD', 'REDIS_PASSWORD', 'INTERNAL_API_KEY']
OPERATOR_SECRET = 'Operator-chosen-S3cret-value'
# The rotation journal, where operator_env records when each generated secret was set (no value).
JOURNAL = '.env.operator.rotation.json'


@pytest.fixture
def umask0():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            operator_env.main()
    out = capsys.readouterr()
    return info.value.code, json.loads(out.out), out.out + out.err


def secret_values(path, keys=None):
    doc = _envfile.EnvFile.from_bytes(open(path, 'rb').read())
    return [doc.value(k) for k in keys or SECRETS if doc.value(k)]


def assert_secrets_not_in(output, values):
    assert values
    for value in values:
        assert value not in output


def base_args(path, **extra):
    args = dict(path=str(path), settings=dict(SETTINGS), secrets=list(SECRETS))
    args.update(extra)
    return args


def mode_of(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


# ----------------------------------------------------------------------------- create, converge, idempotence

def test_create_new_file(tmp_path, capsys, umask0):
    path = tmp_path / '.env.operator'
    rc, result, out = run_main(capsys, base_args(path))
    assert rc == 0, result
    assert result['changed'] is True
    assert result['added_keys'] == ['OPERATOR_NAME', 'MINTING_AUTHORITY', 'EVENTSTORE_MTLS_REQUIRED'] + SECRETS
    assert result['generated_keys'] == SECRETS
    assert result['rotated_keys'] == [] and result['updated_keys'] == [] and result['weak_keys'] == []
    assert result['backup_file'] is None
    assert mode_of(path) == 0o600
    assert sorted(os.listdir(tmp_path)) == ['.env.operator', JOURNAL]
    text = path.read_text()
    assert text.startswith('# Managed by Ansible')
    assert 'MINTING_AUTHORITY=disabled\nEVENTSTORE_MTLS_REQUIRED=true\n' in text
    values = secret_values(path)
    assert len(values) == 3 and len(set(values)) == 3
    for value in values:
        assert len(value) == 43 and _secrets.GENERATED_SECRET_RE.match(value)
    doc = _envfile.EnvFile.from_bytes(path.read_bytes())
    assert result['fingerprints'] == dict((k, _secrets.fingerprint(doc.value(k))) for k in SECRETS)
    assert_secrets_not_in(out, values)
    journal = (tmp_path / JOURNAL).read_text()
    assert mode_of(tmp_path / JOURNAL) == 0o600
    recorded = json.loads(journal)['secrets']
    assert dict((k, v['fingerprint']) for k, v in recorded.items()) == result['fingerprints']
    assert_secrets_not_in(journal, values)


def test_second_run_changes_nothing(tmp_path, capsys):
    path = tmp_path / '.env.operator'
    run_main(capsys, base_args(path))
    before = path.read_bytes()
    rc, result, out = run_main(capsys, base_args(path))
    assert rc == 0
    assert result['changed'] is False
    assert not any(result[k] for k in ('added_keys', 'generated_keys', 'rotated_keys', 'updated_keys'))
    assert result['backup_file'] is None
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['.env.operator', JOURNAL]
    assert_secrets_not_in(out, secret_values(path))


def test_existing_file_kept_and_never_overwritten(tmp_path, capsys, umask0):
    path = tmp_path / '.env.operator'
    original = ('# Written by hand\n'
                'export OPERATOR_NAME=old  # onboarding name\n'
                "POSTGRES_PASSWORD='%s'\n"
                'REDIS_PASSWORD=\n'
                'CUSTOM_THING="keep me"\n'
                'INTERNAL_API_KEY=changeme\n' % OPERATOR_SECRET)
    path.write_text(original)
    os.chmod(str(path), 0o600)
    rc, result, out = run_main(capsys, base_args(path))
    assert rc == 0, result
    text = path.read_text()
    assert text == ('# Written by hand\n'
                    'export OPERATOR_NAME=acme  # onboarding name\n'
                    "POSTGRES_PASSWORD='%s'\n"
                    'REDIS_PASSWORD=%s\n'
                    'CUSTOM_THING="keep me"\n'
                    'INTERNAL_API_KEY=changeme\n'
                    'MINTING_AUTHORITY=disabled\n'
                    'EVENTSTORE_MTLS_REQUIRED=true\n'
                    % (OPERATOR_SECRET, secret_values(path, ['REDIS_PASSWORD'])[0]))
    assert result['updated_keys'] == ['OPERATOR_NAME']
    assert result['added_keys'] == ['MINTING_AUTHORITY', 'EVENTSTORE_MTLS_REQUIRED']
    assert result['generated_keys'] == ['REDIS_PASSWORD']
    assert result['weak_keys'] == ['INTERNAL_API_KEY']
    assert result['weak_reasons'] == {'INTERNAL_API_KEY': 'is a well-known default value'}
    # Warnings go to the result, or straight to the display once controller code was imported in this process.
    assert 'INTERNAL_API_KEY is a well-known default value' in json.dumps(result.get('warnings', [])) + out
    assert result['fingerprints']['POSTGRES_PASSWORD'] == _secrets.fingerprint(OPERATOR_SECRET)
    # backup: previous content, mode 0600 even with umask 000
    backup = result['backup_file']
    assert backup.startswith(str(path) + '.') and backup.endswith('Z.bak')
    assert open(backup).read() == original
    assert mode_of(backup) == 0o600 and mode_of(path) == 0o600
    assert_secrets_not_in(out, [OPERATOR_SECRET] + secret_values(path, ['REDIS_PASSWORD']))


def test_check_mode_writes_nothing(tmp_path, capsys):
    path = tmp_path / '.env.operator'
    rc, result, dummy = run_main(capsys, dict(base_args(path), _ansible_check_mode=True))
    assert rc == 0
    assert result['changed'] is True
    assert result['generated_keys'] == SECRETS
    assert result['fingerprints'] == dict((k, None) for k in SECRETS)
    assert os.listdir(tmp_path) == []

    path.write_text('POSTGRES_PASSWORD=%s\nMINTING_AUTHORITY=enabled\n' % OPERATOR_SECRET)
    before = path.read_bytes()
    rc, result, out = run_main(capsys, dict(base_args(path), rotate=['POSTGRES_PASSWORD'], _ansible_check_mode=True))
    assert rc == 0 and result['changed'] is True
    assert result['rotated_keys'] == ['POSTGRES_PASSWORD']
    assert result['updated_keys'] == ['MINTING_AUTHORITY']
    assert result['fingerprints']['POSTGRES_PASSWORD'] is None
    assert result['backup_file'] is None
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['.env.operator']
    assert OPERATOR_SECRET not in out


def test_check_mode_on_converged_file(tmp_path, capsys):
    path = tmp_path / '.env.operator'
    run_main(capsys, base_args(path))
    rc, result, dummy = run_main(capsys, dict(base_args(path), _ansible_check_mode=True))
    assert rc == 0 and result['changed'] is False
    assert all(result['fingerprints'][k] for k in SECRETS)


def test_diff_mode_redacts_every_secret(tmp_path, capsys):
    path = tmp_path / '.env.operator'
    path.write_text('POSTGRES_PASSWORD=%s\n# OLD_PASSWORD=%s\nCUSTOM=%s\nOPERATOR_NAME=old\n'
                    % (OPERATOR_SECRET, OPERATOR_SECRET + 'x', OPERATOR_SECRET + 'y'))
    rc, result, out = run_main(capsys, dict(base_args(path), rotate=['REDIS_PASSWORD', 'POSTGRES_PASSWORD'],
                                            _ansible_diff=True))
    assert rc == 0
    diff = result['diff']
    assert diff['before'] == ('POSTGRES_PASSWORD=<redacted>\n# OLD_PASSWORD=<redacted>\nCUSTOM=<redacted>\n'
                              'OPERATOR_NAME=old\n')
    assert diff['after'] == ('POSTGRES_PASSWORD=<redacted> (rotated)\n# OLD_PASSWORD=<redacted>\nCUSTOM=<redacted>\n'
                             'OPERATOR_NAME=acme\nMINTING_AUTHORITY=disabled\nEVENTSTORE_MTLS_REQUIRED=true\n'
                             'REDIS_PASSWORD=<redacted> (generated)\nINTERNAL_API_KEY=<redacted> (generated)\n')
    assert diff['before_header'] == diff['after_header'] == str(path)
    assert_secrets_not_in(out, [OPERATOR_SECRET] + secret_values(path))


def test_diff_mode_new_file_in_check_mode(tmp_path, capsys):
    path = tmp_path / '.env.operator'
    rc, result, dummy = run_main(capsys, dict(base_args(path), _ansible_diff=True, _ansible_check_mode=True))
    assert rc == 0
    assert result['diff']['before'] == ''
    assert 'POSTGRES_PASSWORD=<redacted> (generated)\n' in result['diff']['after']
    assert not path.exists()


# ----------------------------------------------------------------------------- rotation and backups

def test_rotate_and_backup_rotation(tmp_path, capsys, umask0):
    path = tmp_path / '.env.operator'
    run_main(capsys, base_args(path))
    seen = set(secret_values(path))
    backups = []
    for round_ in range(4):
        old_redis = secret_values(path, ['REDIS_PASSWORD'])[0]
        old_postgres = secret_values(path, ['POSTGRES_PASSWORD'])[0]
        rc, result, out = run_main(capsys, base_args(path, rotate=['REDIS_PASSWORD'], backup_keep=2))
        assert rc == 0, result
        assert result['changed'] is True
        assert result['rotated_keys'] == ['REDIS_PASSWORD'] and result['generated_keys'] == []
        new_redis = secret_values(path, ['REDIS_PASSWORD'])[0]
        assert new_redis != old_redis and new_redis not in seen
        assert secret_values(path, ['POSTGRES_PASSWORD'])[0] == old_postgres
        assert result['fingerprints']['REDIS_PASSWORD'] == _secrets.fingerprint(new_redis)
        seen.add(new_redis)
        backups.append(result['backup_file'])
        assert mode_of(result['backup_file']) == 0o600
        with open(result['backup_file']) as handle:
            assert old_redis in handle.read()
        assert_secrets_not_in(out, [old_redis, new_redis, old_postgres])
        if round_ >= 2:
            assert result['removed_backups'] == [backups[round_ - 2]]
    assert len(set(backups)) == 4  # same-second runs get distinct names
    assert _envfile.list_backups(str(path)) == [backups[3], backups[2]]
    assert sorted(os.listdir(tmp_path)) == sorted(['.env.operator', JOURNAL] + [os.path.basename(b) for b in backups[2:]])
    assert mode_of(path) == 0o600


def test_no_backup(tmp_path, capsys):
    path = tmp_path / '.env.operator'
    run_main(capsys, base_args(path))
    rc, result, dummy = run_main(capsys, base_args(path, rotate=['INTERNAL_API_KEY'], backup=False))
    assert rc == 0 and result['changed'] is True and result['backup_file'] is None
    assert sorted(os.listdir(tmp_path)) == ['.env.operator', JOURNAL]


# ----------------------------------------------------------------------------- metadata

def test_mode_repaired_without_content_change(tmp_path, capsys):
    path = tmp_path / '.env.operator'
    run_main(capsys, base_args(path))
    before = path.read_bytes()
    os.chmod(str(path), 0o644)
    rc, result, dummy = run_main(capsys, dict(base_args(path), _ansible_check_mode=True))
    assert rc == 0 and result['changed'] is True and mode_of(path) == 0o644
    rc, result, dummy = run_main(capsys, base_args(path))
    assert rc == 0 and result['changed'] is True
    assert result['backup_file'] is None
    assert mode_of(path) == 0o600 and path.read_bytes() == before
    rc, result, dummy = run_main(capsys, base_args(path, mode='0640'))
    assert result['changed'] is True and mode_of(path) == 0o640
    rc, result, dummy = run_main(capsys, base_args(path, mode='0640'))
    assert result['changed'] is False


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to change owners')
def test_owner_and_group(tmp_path, capsys):
    path = tmp_path / '.env.operator'
    rc, result, dummy = run_main(capsys, base_args(path, owner='65534', group='65534'))
    assert rc == 0
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)
    # kept on rewrite when not given
    rc, result, dummy = run_main(capsys, base_args(path, rotate=['REDIS_PASSWORD']))
    assert rc == 0 and result['changed'] is True
    info = path.stat()
    assert (info.st_uid, info.st_gid) == (65534, 65534)
    rc, result, dummy = run_main(capsys, base_args(path, owner='0'))
    assert result['changed'] is True and path.stat().st_uid == 0


def test_symlink_is_followed(tmp_path, capsys):
    real = tmp_path / 'real.env'
    link = tmp_path / '.env.operator'
    os.symlink('real.env', str(link))
    rc, result, dummy = run_main(capsys, base_args(link))
    assert rc == 0
    assert os.path.islink(str(link)) and result['path'] == str(real)
    assert 'MINTING_AUTHORITY=disabled' in real.read_text()


# ----------------------------------------------------------------------------- refused input: nothing changes

@pytest.mark.parametrize('content, args, message', [
    ('A=1\nthis line is wrong %s\n' % OPERATOR_SECRET, {}, 'Line 2 of the env file .* is not KEY=value'),
    ('A="%s\n' % OPERATOR_SECRET, {}, 'Line 1 of the env file .* never closed'),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'settings': {'POSTGRES_PASSWORD': 'x'}},
     'POSTGRES_PASSWORD is both a setting and a secret'),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'secrets': ['lower-case']}, "'lower-case' is not a valid"),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'rotate': ['9X']}, "rotate entry '9X' is not a valid"),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'settings': {'X': 'a\nb'}}, 'Setting X contains a line break'),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'settings': {'X': "a'b\\c"}}, 'holds a backslash'),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'mode': '0644'}, 'give other users access'),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'secret_length': 8}, 'secret_length must be between 16 and 512'),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'backup_keep': -1}, 'backup_keep must be 0'),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'owner': 'no-such-user-here'}, "user 'no-such-user-here' does not"),
    ('POSTGRES_PASSWORD=%s\n' % OPERATOR_SECRET, {'group': 'no-such-group-here'}, "group 'no-such-group-here' does"),
])
def test_refused_before_any_change(tmp_path, capsys, content, args, message):
    path = tmp_path / '.env.operator'
    path.write_text(content)
    os.chmod(str(path), 0o600)
    rc, result, out = run_main(capsys, base_args(path, **args))
    assert rc == 1
    assert result['failed'] is True
    assert re.search(message, result['msg']), result['msg']
    assert path.read_text() == content
    assert sorted(os.listdir(tmp_path)) == ['.env.operator']
    assert OPERATOR_SECRET not in out


def test_missing_directory(tmp_path, capsys):
    rc, result, dummy = run_main(capsys, base_args(tmp_path / 'nope' / '.env.operator'))
    assert rc == 1 and 'does not exist. Create the stack directory' in result['msg']


def test_missing_directory_in_check_mode_reports_the_new_file(tmp_path, capsys):
    # A fresh host in check mode: the role's directory task would create the directory.
    rc, result, dummy = run_main(capsys, dict(base_args(tmp_path / 'nope' / '.env.operator'), _ansible_check_mode=True))
    assert rc == 0 and result['changed'] is True
    assert sorted(result['generated_keys']) == sorted(SECRETS)
    assert not (tmp_path / 'nope').exists()


def test_path_is_a_directory(tmp_path, capsys):
    rc, result, dummy = run_main(capsys, base_args(tmp_path))
    assert rc == 1 and 'is not a regular file' in result['msg']


def test_run_without_secret_values_set(tmp_path):
    params = dict(path=str(tmp_path / 'e'), settings={}, secrets=['S'], rotate=[], secret_length=16, backup=True,
                  backup_keep=1, mode='0600', owner=None, group=None)
    result, warnings = operator_env.run(params)
    assert result['generated_keys'] == ['S'] and warnings == []


def test_module_as_script(tmp_path):
    """Run the module file the way a target runs it and grep everything it prints for the secrets."""
    path = tmp_path / '.env.operator'
    path.write_text('POSTGRES_PASSWORD=%s\nREDIS_PASSWORD=postgres\n' % OPERATOR_SECRET)
    args = tmp_path / 'args.json'
    args.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': dict(base_args(path), rotate=['INTERNAL_API_KEY'],
                                                            _ansible_diff=True, _ansible_verbosity=4)}))
    proc = subprocess.run([sys.executable, operator_env.__file__, str(args)], capture_output=True, text=True,
                          check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result['changed'] is True and result['weak_keys'] == ['REDIS_PASSWORD']
    assert_secrets_not_in(proc.stdout + proc.stderr, [OPERATOR_SECRET] + secret_values(path))
