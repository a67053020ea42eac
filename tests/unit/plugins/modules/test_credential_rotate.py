# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""credential_rotate phases against a simulated stack (PostgreSQL verifier, Redis ACL hashes,
registry internal key) and a real env file on disk: apply, undo on failure, verify, rollback, sync."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
from ansible_collections.theprotocol.operator.plugins.modules import credential_rotate

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = json.load(open(os.path.join(HERE, '..', 'module_utils', 'fixtures', 'rotation_compose_config.json'),
                        encoding='utf-8'))
OLD = {'POSTGRES_PASSWORD': 'old-pg-Password-0123456789', 'REDIS_PASSWORD': 'old-redis-Password-0123456789',
       'INTERNAL_API_KEY': 'old-internal-Key-0123456789'}
ENV = ('# Managed by Ansible\nOPERATOR_NAME=acme\nPOSTGRES_USER=registry\nPOSTGRES_DB=registry\n'
       'POSTGRES_PASSWORD=%(POSTGRES_PASSWORD)s\nREDIS_PASSWORD=%(REDIS_PASSWORD)s # keep\n'
       'INTERNAL_API_KEY=%(INTERNAL_API_KEY)s\nMINTING_AUTHORITY=disabled\n' % OLD).encode()


class FakeStack:
    """What the containers hold: the role's verifier, the ACL hashes, the key the registry reads."""

    def __init__(self, values):
        self.verifier = _rotation.scram_sha256_verifier(values['POSTGRES_PASSWORD'])
        self.hashes = [_rotation.redis_password_hash(values['REDIS_PASSWORD'])]
        self.registry_key = values['INTERNAL_API_KEY']
        self.pg_read_only = False
        self.redis_down = False
        self.acl_save_fails = False
        self.pg_user = self.pg_db = None
        self.sent = []          # everything that would travel to a container

    def pg_verifier(self):
        return self.verifier

    def pg_set_password(self, password):
        sql = _rotation.pg_alter_role_sql('registry', _rotation.scram_sha256_verifier(password))
        self.sent.append(sql)
        if self.pg_read_only:
            raise _rotation.RotationError('PostgreSQL refused ALTER ROLE registry (read-only).', 'postgres')
        self.verifier = sql.split("'")[1]

    def pg_login_ok(self, password):
        return _rotation.scram_verifier_matches(password, self.verifier)

    def redis_login_ok(self, password):
        return not self.redis_down and _rotation.redis_password_hash(password) in self.hashes

    def redis_hashes(self, password):
        if not self.redis_login_ok(password):
            raise _rotation.RotationError('Redis: cannot read the ACL.', 'redis')
        return list(self.hashes)

    def redis_change(self, password, add=(), remove=()):
        self.sent.append(_rotation.redis_setuser_commands(add, remove))
        if not self.redis_login_ok(password) or self.acl_save_fails:
            raise _rotation.RotationError('Redis refused ACL SAVE.', 'redis')
        self.hashes = [h for h in self.hashes if h not in remove] + [h for h in add if h not in self.hashes]

    def internal_key_status(self, key):
        return 200 if key == self.registry_key else 401


class FakeModule:
    def __init__(self):
        self.no_log_values = set()


@pytest.fixture
def stack_dir(tmp_path):
    path = tmp_path / '.env.operator'
    path.write_bytes(ENV)
    path.chmod(0o600)
    return tmp_path


def rotation(stack_dir, stack, phase='apply', check_mode=False, **params):
    p = dict(phase=phase, project_dir=str(stack_dir), registry_name='acme', env_file='.env.operator',
             compose_file='docker-compose.operator.yml', secrets=[], backup_file=None, backup_keep=3,
             secret_length=32, registry_port=8080, drop_old_redis_password=True)
    p.update(params)
    return credential_rotate.Rotation(FakeModule(), p, stack, CONFIG, check_mode=check_mode)


def current(stack_dir):
    return _rotation.env_values((stack_dir / '.env.operator').read_bytes())


def test_plan_and_check_mode_change_nothing(stack_dir):
    stack = FakeStack(OLD)
    result = rotation(stack_dir, stack, check_mode=True).apply()
    assert result['changed'] and result['rotate'] == list(_rotation.SUPPORTED_SECRETS)
    assert result['recreate_services'] == ['registry']
    assert result['live_services'] == {'db': ['POSTGRES_PASSWORD'], 'redis': ['REDIS_PASSWORD']}
    assert (stack_dir / '.env.operator').read_bytes() == ENV
    assert sorted(os.listdir(stack_dir)) == ['.env.operator'] and not stack.sent


def test_apply_verify_full_cycle(stack_dir):
    stack = FakeStack(OLD)
    rot = rotation(stack_dir, stack)
    result = rot.apply()
    new = current(stack_dir)
    backup = result['backup_file']
    assert _envfile.read(backup)[0] == ENV
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(stack_dir / '.env.operator').st_mode) == 0o600
    assert all(new[k] != OLD[k] for k in OLD)
    # Both Redis passwords valid during the roll-over; PostgreSQL switched.
    assert stack.redis_login_ok(OLD['REDIS_PASSWORD']) and stack.redis_login_ok(new['REDIS_PASSWORD'])
    assert stack.pg_login_ok(new['POSTGRES_PASSWORD']) and not stack.pg_login_ok(OLD['POSTGRES_PASSWORD'])
    # Only the changed lines changed (the comment stays).
    assert b'REDIS_PASSWORD=' + new['REDIS_PASSWORD'].encode() + b' # keep\n' in (stack_dir / '.env.operator').read_bytes()
    # No plaintext travelled to a container, and every value is masked.
    for value in list(OLD.values()) + list(new.values()):
        assert all(value not in sent for sent in stack.sent)
        assert value in rot.module.no_log_values
    assert value not in json.dumps(result)
    stack.registry_key = new['INTERNAL_API_KEY']      # the recreated registry reads the new file
    verified = rotation(stack_dir, stack, phase='verify', backup_file=backup).verify()
    assert all(verified['checks'].values()) and len(verified["checks"]) == 6
    assert not stack.redis_login_ok(OLD['REDIS_PASSWORD'])


def test_verify_fails_when_registry_still_has_the_old_key(stack_dir):
    stack = FakeStack(OLD)
    backup = rotation(stack_dir, stack).apply()['backup_file']
    with pytest.raises(_rotation.RotationError, match='internal_key_new_accepted'):
        rotation(stack_dir, stack, phase='verify', backup_file=backup).verify()


@pytest.mark.parametrize('fault,done', [
    ('pg_read_only', ['redis_added', 'env_written']),
    ('acl_save_fails', []),
])
def test_failed_step_leaves_the_journal_and_rollback_undoes_everything(stack_dir, fault, done):
    stack = FakeStack(OLD)
    setattr(stack, fault, True)
    with pytest.raises(_rotation.RotationError):
        rotation(stack_dir, stack).apply()
    journal = json.loads((stack_dir / '.env.operator.rotation.json').read_text())
    assert journal['rotation']['state'] == 'in_progress' and journal['rotation']['done'] == done
    assert stat.S_IMODE(os.stat(stack_dir / '.env.operator.rotation.json').st_mode) == 0o600
    status = rotation(stack_dir, stack, phase='status').status()
    assert status['decision'] == 'back', status['reason']
    stack.acl_save_fails = stack.pg_read_only = False
    rotation(stack_dir, stack, phase='rollback').rollback()
    closed = rotation(stack_dir, stack, phase='finish', outcome='rolled_back').finish()
    assert closed['state'] == 'rolled_back'
    assert (stack_dir / '.env.operator').read_bytes() == ENV
    assert stack.hashes == [_rotation.redis_password_hash(OLD['REDIS_PASSWORD'])]
    assert stack.pg_login_ok(OLD['POSTGRES_PASSWORD'])
    assert not (stack_dir / '.env.operator.pending').exists()
    text = (stack_dir / '.env.operator.rotation.json').read_text()
    for value in OLD.values():
        assert value not in text


STEPS = ('redis_add', 'env_write', 'pg_alter')


@pytest.mark.parametrize('reached,decision', [
    (0, 'back'),     # staged: backup and pending values, nothing live
    (1, 'back'),     # Redis accepts the new password too
    (2, 'back'),     # .env.operator holds the new values, PostgreSQL the old one
    (3, 'forward'),  # ALTER ROLE made: the new values are live
])
def test_crash_after_each_step_is_finished_or_rolled_back(stack_dir, reached, decision):
    """A run stops after ``reached`` live steps; the next run's decision, then its outcome: one password
    in Redis, the file equal to the live credentials."""
    stack = FakeStack(OLD)
    staged = rotation(stack_dir, stack, phase='begin').begin()
    pending = _rotation.env_values((stack_dir / '.env.operator.pending').read_bytes())
    assert _rotation.fingerprints(pending) == staged['fingerprints']['after']
    for step in STEPS[:reached]:
        rotation(stack_dir, stack, step=step).apply()
    status = rotation(stack_dir, stack, phase='status').status()
    assert status['decision'] == decision, status['reason']
    assert ('rolling forward' if decision == 'forward' else 'rolling back') in status['reason']
    assert status['recreate_services'] == ['registry']
    if decision == 'forward':
        rotation(stack_dir, stack, phase='sync').sync()
        stack.registry_key = current(stack_dir)['INTERNAL_API_KEY']    # the recreate
        rotation(stack_dir, stack, phase='verify').verify()
        rotation(stack_dir, stack, phase='finish', outcome='completed').finish()
        final = pending
    else:
        rotation(stack_dir, stack, phase='rollback').rollback()
        rotation(stack_dir, stack, phase='finish', outcome='rolled_back').finish()
        final = OLD
        assert (stack_dir / '.env.operator').read_bytes() == ENV
    assert current(stack_dir) == final
    assert stack.hashes == [_rotation.redis_password_hash(final['REDIS_PASSWORD'])]
    assert stack.pg_login_ok(final['POSTGRES_PASSWORD'])
    assert rotation(stack_dir, stack, phase='status').status()['decision'] == 'none'
    # A retry stages fresh values, never those of the interrupted attempt.
    again = rotation(stack_dir, stack, phase='begin').begin()
    assert again['fingerprints']['after'] != staged['fingerprints']['after']


def test_new_values_in_the_file_and_live_go_forward_without_the_pending_file(stack_dir):
    stack = FakeStack(OLD)
    rotation(stack_dir, stack, phase='begin').begin()
    for step in STEPS:
        rotation(stack_dir, stack, step=step).apply()
    (stack_dir / '.env.operator.pending').unlink()
    status = rotation(stack_dir, stack, phase='status').status()
    assert status['decision'] == 'forward', status['reason']
    assert status['facts']['postgres'] == 'new' and status['facts']['redis'] == {'new': True, 'old': True}


def test_begin_refuses_while_a_rotation_is_unfinished(stack_dir):
    stack = FakeStack(OLD)
    rotation(stack_dir, stack, phase='begin').begin()
    listing = sorted(os.listdir(stack_dir))
    with pytest.raises(_rotation.RotationError, match='unfinished rotation of POSTGRES_PASSWORD, REDIS_PASSWORD'):
        rotation(stack_dir, stack, phase='begin').begin()
    assert sorted(os.listdir(stack_dir)) == listing


def test_env_changed_by_hand_during_a_rotation_is_refused(stack_dir):
    stack = FakeStack(OLD)
    rotation(stack_dir, stack, phase='begin').begin()
    rotation(stack_dir, stack, step='redis_add').apply()
    path = stack_dir / '.env.operator'
    envfile = _envfile.EnvFile.from_bytes(path.read_bytes())
    envfile.set('POSTGRES_PASSWORD', 'typed-by-hand-0123456789')
    path.write_bytes(envfile.render().encode())
    status = rotation(stack_dir, stack, phase='status').status()
    assert status['decision'] == 'refuse' and 'neither side' in status['reason']


def test_completed_rotation_records_the_secret_ages(stack_dir):
    stack = FakeStack(OLD)
    before = rotation(stack_dir, stack, phase='status').status()['secret_ages']
    assert set(v['note'] for v in before.values()) == {'no record of when it was set'}
    rotation(stack_dir, stack).apply()
    stack.registry_key = current(stack_dir)['INTERNAL_API_KEY']
    rotation(stack_dir, stack, phase='verify').verify()
    rotation(stack_dir, stack, phase='finish', outcome='completed').finish()
    ages = rotation(stack_dir, stack, phase='status').status()['secret_ages']
    assert set(ages) == set(OLD) and all(v['days'] == 0 and v['since'] for v in ages.values())


def test_apply_and_record_take_only_their_steps(stack_dir):
    stack = FakeStack(OLD)
    rotation(stack_dir, stack, phase='begin').begin()
    with pytest.raises(_rotation.RotationError, match='not a step of phase=apply'):
        rotation(stack_dir, stack, step='recreated').apply()
    with pytest.raises(_rotation.RotationError, match='takes step=recreated'):
        rotation(stack_dir, stack, phase='record', step='pg_alter').record()
    assert rotation(stack_dir, stack, phase='record', step='recreated').record()['step'] == 'recreated'


def test_apply_refuses_when_file_and_database_disagree(stack_dir):
    stack = FakeStack(dict(OLD, POSTGRES_PASSWORD='something-else-entirely'))
    with pytest.raises(_rotation.RotationError, match='guide'):
        rotation(stack_dir, stack).apply()
    assert (stack_dir / '.env.operator').read_bytes() == ENV and not stack.sent


def test_redis_down_fails_before_any_change(stack_dir):
    stack = FakeStack(OLD)
    stack.redis_down = True
    with pytest.raises(_rotation.RotationError):
        rotation(stack_dir, stack).apply()
    assert sorted(os.listdir(stack_dir)) == ['.env.operator'] and not stack.sent


@pytest.mark.parametrize('after_verify', [False, True])
def test_rollback_restores_file_bytes_and_live_credentials(stack_dir, after_verify):
    stack = FakeStack(OLD)
    backup = rotation(stack_dir, stack).apply()['backup_file']
    if after_verify:
        stack.registry_key = current(stack_dir)['INTERNAL_API_KEY']
        rotation(stack_dir, stack, phase='verify', backup_file=backup).verify()
    result = rotation(stack_dir, stack, phase='rollback', backup_file=backup).rollback()
    assert sorted(result['restored']) == ['env_file', 'postgres', 'redis']
    assert result['recreate_services'] == ['registry']
    assert (stack_dir / '.env.operator').read_bytes() == ENV
    assert stack.pg_login_ok(OLD['POSTGRES_PASSWORD'])
    assert stack.hashes == [_rotation.redis_password_hash(OLD['REDIS_PASSWORD'])]
    again = rotation(stack_dir, stack, phase='rollback', backup_file=backup).rollback()
    assert again['restored'] == [] and not again['changed'] and again['recreate_services'] == []


def test_sync_repairs_the_guides_procedure(stack_dir):
    """The guide: new values in the file, down, up -d: the servers keep the old ones."""
    stack = FakeStack(OLD)
    _envfile.backup(str(stack_dir / '.env.operator'), ENV)
    path = stack_dir / '.env.operator'
    envfile = _envfile.EnvFile.from_bytes(path.read_bytes())
    for key in OLD:
        envfile.set(key, 'naive-new-%s-value-0123' % key.lower())
    path.write_bytes(envfile.render().encode())
    check = rotation(stack_dir, stack, phase='sync', check_mode=True).sync()
    assert sorted(check['restored']) == ['postgres', 'redis'] and not stack.sent
    result = rotation(stack_dir, stack, phase='sync').sync()
    assert sorted(result['restored']) == ['postgres', 'redis']
    new = current(stack_dir)
    assert stack.pg_login_ok(new['POSTGRES_PASSWORD']) and stack.redis_login_ok(new['REDIS_PASSWORD'])
    assert not stack.redis_login_ok(OLD['REDIS_PASSWORD'])
    assert result['changed_keys'] == ['POSTGRES_PASSWORD', 'REDIS_PASSWORD']
    assert result['recreate_services'] == ['registry']
    again = rotation(stack_dir, stack, phase='sync').sync()
    assert again['restored'] == [] and again['recreate_services'] == []
