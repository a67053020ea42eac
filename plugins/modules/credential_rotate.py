#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: credential_rotate
short_description: Rotate the operator stack's PostgreSQL, Redis and internal-key secrets live, with rollback
version_added: 0.1.0
description:
  - Changes the credentials of a running operator stack, not only the values in C(.env.operator). The guide's procedure
    (new C(.env.operator), C(down), C(up -d)) locks the registry out of PostgreSQL, which applies
    C(POSTGRES_PASSWORD) to an empty data directory only.
  - O(phase=plan) reports what would rotate and which compose services would be recreated. Nothing is changed.
  - O(phase=apply) backs up C(.env.operator) (C(<file>.<timestamp>.bak), mode C(0600)), generates new values, adds the new
    Redis password next to the old one (C(ACL SETUSER default) with its SHA-256, C(ACL SAVE)), rewrites C(.env.operator)
    atomically and sets the new PostgreSQL password with C(ALTER ROLE ... PASSWORD '<SCRAM-SHA-256 verifier>'), the
    verifier being computed by the module so that the plaintext never reaches the server, its log or
    C(pg_stat_activity). If a step fails, the steps done are undone before the module fails.
  - After O(phase=apply) the caller recreates RV(recreate_services) (compose copies the C(secrets) into a container when it
    creates it; a changed value is not seen as a change by C(docker compose up)).
  - O(phase=verify) checks that the new credentials are accepted and the old ones refused (PostgreSQL login, Redis
    C(AUTH), C(X-Internal-Key) on the registry's C(/internal/status)) and drops the old Redis password.
  - O(phase=rollback) puts the old live credentials back and restores C(.env.operator) byte for byte from
    O(backup_file); the caller then recreates RV(recreate_services).
  - O(phase=sync) makes the live PostgreSQL and Redis credentials match C(.env.operator), for example to repair a stack
    broken by the guide's procedure. Redis is authenticated with a value from the file or from its backups.
  - Commands run in the stack's containers (C(<registry_name>-db), C(-redis), C(-registry)) through the Docker API.
    Secret values are passed in the exec environment and on standard input of a shell built-in, never on a command line,
    and are never returned.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
attributes:
  check_mode:
    support: full
    details:
      - Every phase reports what it would do (O(phase=plan) output) and changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - O(phase=apply) generates new values on every run. O(phase=rollback) and O(phase=sync) are idempotent.
requirements:
  - Docker SDK for Python (Debian C(python3-docker)) and the docker compose v2 CLI plugin on the host.
options:
  phase:
    description: The step to run, see the description.
    type: str
    choices: [plan, apply, verify, rollback, sync]
    required: true
  project_dir:
    description: The stack directory, holding the compose file and the env file.
    type: path
    required: true
  registry_name:
    description: The compose project name; containers are named C(<registry_name>-<service>).
    type: str
    required: true
  env_file:
    description: The env file, relative to O(project_dir).
    type: str
    default: .env.operator
  compose_file:
    description: The compose file, relative to O(project_dir).
    type: str
    default: docker-compose.operator.yml
  secrets:
    description: The keys to rotate. Empty means all of them.
    type: list
    elements: str
    choices: [POSTGRES_PASSWORD, REDIS_PASSWORD, INTERNAL_API_KEY]
    default: []
  backup_file:
    description:
      - The backup that O(phase=apply) returned. Required for O(phase=verify) and O(phase=rollback), which read the old
        values from it.
    type: path
  backup_keep:
    description: After the backup of O(phase=apply), keep this many newest backups (V(0) keeps all).
    type: int
    default: 10
  secret_length:
    description: Bytes of entropy of each new value.
    type: int
    default: 32
  registry_port:
    description: The port of the registry application inside its container (for the internal-key check).
    type: int
    default: 8080
  drop_old_redis_password:
    description: In O(phase=verify), remove the old Redis password (C(ACL SETUSER default !<sha256>), C(ACL SAVE)).
    type: bool
    default: true
notes:
  - The C(db) and C(redis) services are not recreated; their credential is changed live, and the value in their
    C(/run/secrets) is only read to initialize an empty data directory.
seealso:
  - module: theprotocol.operator.operator_env
"""

EXAMPLES = r"""
- name: Rotate all stack secrets live
  theprotocol.operator.credential_rotate:
    phase: apply
    project_dir: /opt/theprotocol/acme
    registry_name: acme
  register: rotation

- name: Recreate the clients
  community.docker.docker_compose_v2:
    project_src: /opt/theprotocol/acme
    files: [docker-compose.operator.yml]
    services: "{{ rotation.recreate_services }}"
    recreate: always
    dependencies: false

- name: New credentials accepted, old refused; drop the old Redis password
  theprotocol.operator.credential_rotate:
    phase: verify
    project_dir: /opt/theprotocol/acme
    registry_name: acme
    backup_file: "{{ rotation.backup_file }}"
"""

RETURN = r"""
rotate:
  description: The keys that are (or would be) rotated.
  returned: success
  type: list
  elements: str
  sample: [POSTGRES_PASSWORD, REDIS_PASSWORD, INTERNAL_API_KEY]
recreate_services:
  description: Compose services that receive a changed value and must be recreated.
  returned: success
  type: list
  elements: str
  sample: [registry]
live_services:
  description: Services whose credential is changed live and that keep running, with the keys concerned.
  returned: success
  type: dict
  sample: {db: [POSTGRES_PASSWORD], redis: [REDIS_PASSWORD]}
backup_file:
  description: The backup of the env file made by O(phase=apply) (holds the old values; mode C(0600)).
  returned: success
  type: str
  sample: /opt/theprotocol/acme/.env.operator.20260604T120000Z.bak
removed_backups:
  description: Old backups removed because of O(backup_keep).
  returned: success
  type: list
  elements: str
  sample: []
fingerprints:
  description: First 12 hex digits of the SHA-256 of each value before and after; never a value.
  returned: success
  type: dict
  sample: {before: {REDIS_PASSWORD: 9b0d41e6c2aa}, after: {REDIS_PASSWORD: 3f1c0a9e42b7}}
checks:
  description: Results of O(phase=verify), O(phase=rollback) and O(phase=sync) checks, by name.
  returned: success
  type: dict
  sample: {postgres_new_accepted: true, postgres_old_refused: true}
restored:
  description: What O(phase=rollback) or O(phase=sync) changed (C(env_file), C(postgres), C(redis)).
  returned: success
  type: list
  elements: str
  sample: [postgres, env_file]
undone:
  description: On a failed O(phase=apply), the steps that were undone before failing.
  returned: failure
  type: list
  elements: str
  sample: [redis]
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack as stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets

try:
    import docker
    HAS_DOCKER = True
except ImportError:
    HAS_DOCKER = False


class DockerExecutor:
    """``executor(container, argv, env) -> (rc, output)`` over the Docker API."""

    def __init__(self):
        self.client = docker.from_env(timeout=60)

    def __call__(self, container, argv, env):
        try:
            found = self.client.containers.get(container)
        except docker.errors.NotFound:
            return 125, 'container %s not found' % container
        if found.status != 'running':
            return 125, 'container %s is %s' % (container, found.status)
        try:
            result = stack.exec_run(found, argv, 60, environment=env)
        except stack.ExecTimeout as exc:
            return 124, str(exc)
        return result.exit_code, (result.output or b'').decode('utf-8', 'replace')


def compose_config(module, params):
    """The stack's compose configuration without interpolation (so without any value of the env file)."""
    cmd = ['docker', 'compose', '--project-directory', params['project_dir'],
           '-f', os.path.join(params['project_dir'], params['compose_file']),
           'config', '--no-interpolate', '--format', 'json']
    rc, out, err = module.run_command(cmd, cwd=params['project_dir'])
    if rc != 0:
        raise _rotation.RotationError('docker compose config failed for %s (rc %d): %s'
                                      % (params['compose_file'], rc, err.strip()[-500:]), 'plan')
    return json.loads(out)


class Rotation:
    def __init__(self, module, params, live, config, check_mode=False, now=None):
        self.module = module
        self.p = params
        self.live = live
        self.config = config
        self.check_mode = check_mode
        self.now = now
        self.path = os.path.realpath(os.path.join(params['project_dir'], params['env_file']))
        self.keys = _rotation.validate_selection(params['secrets'])

    def protect(self, *values):
        for value in values:
            if value and len(value) >= 8 and value.lower() not in _secrets.WELL_KNOWN_DEFAULTS:
                self.module.no_log_values.add(value)

    def read_env(self, path=None):
        data, info = _envfile.read(path or self.path)
        if data is None:
            raise _rotation.RotationError('%s does not exist. Deploy the stack (operator_stack) first.'
                                          % (path or self.path), 'preflight')
        envfile = _envfile.EnvFile.from_bytes(data, 'env file %s' % (path or self.path))
        values = dict((k, envfile.value(k)) for k in _rotation.SUPPORTED_SECRETS)
        self.protect(*values.values())
        return data, info, envfile, values

    def plan(self):
        services = _rotation.plan_services(self.config, self.keys)
        return dict(rotate=self.keys, recreate_services=services['recreate'], live_services=services['live'])

    def pg_names(self, envfile):
        return envfile.value('POSTGRES_USER') or 'postgres', envfile.value('POSTGRES_DB') or envfile.value(
            'POSTGRES_USER') or 'postgres'

    # ------------------------------------------------------------------ apply
    def apply(self):
        result = self.plan()
        data, info, envfile, old = self.read_env()
        missing = [k for k in self.keys if not old.get(k)]
        if missing:
            raise _rotation.RotationError('%s has no value for %s: there is nothing live to rotate. Deploy the stack '
                                          '(operator_stack) first.' % (self.path, ', '.join(missing)), 'preflight')
        self.live.pg_user, self.live.pg_db = self.pg_names(envfile)
        # Preflight: the file must match the live credentials, or the rotation would lock the stack out.
        if 'POSTGRES_PASSWORD' in self.keys and not _rotation.scram_verifier_matches(
                old['POSTGRES_PASSWORD'], self.live.pg_verifier()):
            raise _rotation.RotationError(
                'POSTGRES_PASSWORD in %s is not the live password of role %s (was the stack rotated the guide\'s way?). '
                'Repair it first (phase=sync, or the secret_rotation role with secret_rotation_action=repair). '
                'Nothing was changed.' % (self.path, self.live.pg_user), 'preflight')
        if 'REDIS_PASSWORD' in self.keys:
            self.live.redis_hashes(old['REDIS_PASSWORD'])
        result['fingerprints'] = dict(before=_rotation.fingerprints(dict((k, old[k]) for k in self.keys)))
        if self.check_mode:
            result['changed'] = True
            return result

        new = dict((k, _secrets.generate_secret(self.p['secret_length'])) for k in self.keys)
        self.protect(*new.values())
        result['backup_file'] = _envfile.backup(self.path, data, now=self.now)
        result['removed_backups'] = _envfile.prune_backups(self.path, self.p['backup_keep'])
        done = []
        try:
            if 'REDIS_PASSWORD' in new:
                self.live.redis_change(old['REDIS_PASSWORD'], add=[_rotation.redis_password_hash(new['REDIS_PASSWORD'])])
                done.append('redis')
            for key in self.keys:
                envfile.set(key, new[key])
            _envfile.atomic_write(self.path, envfile.render().encode('utf-8'), mode=info.st_mode & 0o7777,
                                  uid=info.st_uid, gid=info.st_gid)
            done.append('env_file')
            if 'POSTGRES_PASSWORD' in new:
                done.append('postgres')  # undo even if ALTER ROLE failed after applying
                self.live.pg_set_password(new['POSTGRES_PASSWORD'])
        except (_rotation.RotationError, _envfile.EnvFileError) as exc:
            undone, problems = self.undo(done, data, info, old, new)
            raise _rotation.RotationError(
                'Rotation failed at step %s: %s Undone: %s.%s' % (
                    getattr(exc, 'step', None) or 'env_file', exc, ', '.join(undone) or 'nothing',
                    (' NOT undone: %s.' % '; '.join(problems)) if problems else ' The old credentials are in force.'),
                'apply') from None
        result['fingerprints']['after'] = _rotation.fingerprints(new)
        result['changed'] = True
        return result

    def undo(self, done, data, info, old, new):
        undone, problems = [], []
        if 'postgres' in done:
            try:
                if not _rotation.scram_verifier_matches(old['POSTGRES_PASSWORD'], self.live.pg_verifier()):
                    self.live.pg_set_password(old['POSTGRES_PASSWORD'])
                undone.append('postgres')
            except _rotation.RotationError as exc:
                problems.append(str(exc))
        if 'env_file' in done:
            try:
                _envfile.atomic_write(self.path, data, mode=info.st_mode & 0o7777, uid=info.st_uid, gid=info.st_gid)
                undone.append('env_file')
            except _envfile.EnvFileError as exc:
                problems.append(str(exc))
        if 'redis' in done:
            try:
                self.live.redis_change(old['REDIS_PASSWORD'],
                                       remove=[_rotation.redis_password_hash(new['REDIS_PASSWORD'])])
                undone.append('redis')
            except _rotation.RotationError as exc:
                problems.append(str(exc))
        return undone, problems

    # ------------------------------------------------------------------ verify
    def old_values(self):
        if not self.p['backup_file']:
            raise _rotation.RotationError('backup_file is required for phase=%s.' % self.p['phase'], 'preflight')
        dummy, dummy2, dummy3, old = self.read_env(self.p['backup_file'])
        return old

    def verify(self):
        result = self.plan()
        old = self.old_values()
        dummy, dummy2, envfile, new = self.read_env()
        self.live.pg_user, self.live.pg_db = self.pg_names(envfile)
        checks = {}
        if 'POSTGRES_PASSWORD' in self.keys:
            checks['postgres_new_accepted'] = self.live.pg_login_ok(new['POSTGRES_PASSWORD'])
            checks['postgres_old_refused'] = not self.live.pg_login_ok(old['POSTGRES_PASSWORD'])
        if 'INTERNAL_API_KEY' in self.keys:
            checks['internal_key_new_accepted'] = self.live.internal_key_status(new['INTERNAL_API_KEY']) == 200
            checks['internal_key_old_refused'] = self.live.internal_key_status(old['INTERNAL_API_KEY']) == 401
        if 'REDIS_PASSWORD' in self.keys:
            checks['redis_new_accepted'] = self.live.redis_login_ok(new['REDIS_PASSWORD'])
            if self.p['drop_old_redis_password'] and checks['redis_new_accepted']:
                old_hash = _rotation.redis_password_hash(old['REDIS_PASSWORD'])
                if not self.check_mode and old_hash in self.live.redis_hashes(new['REDIS_PASSWORD']):
                    self.live.redis_change(new['REDIS_PASSWORD'], remove=[old_hash])
                    result['changed'] = True
                checks['redis_old_refused'] = self.check_mode or not self.live.redis_login_ok(old['REDIS_PASSWORD'])
        result['checks'] = checks
        failed = sorted(k for k, ok in checks.items() if not ok)
        if failed:
            raise _rotation.RotationError('Verification failed: %s.' % ', '.join(failed), 'verify')
        return result

    # ------------------------------------------------------------------ rollback / sync
    def restore_live(self, target, auth_candidates, envfile):
        """Make PostgreSQL and Redis accept exactly the ``target`` values; returns (restored, problems)."""
        self.live.pg_user, self.live.pg_db = self.pg_names(envfile)
        restored, problems, state = [], [], {}
        try:
            state['postgres_verifier'] = self.live.pg_verifier()
        except _rotation.RotationError as exc:
            state['postgres_verifier'] = None
            problems.append(str(exc))
        redis_auth = _rotation.first_usable(auth_candidates, self.live.redis_login_ok)
        state['redis_hashes'] = self.live.redis_hashes(redis_auth) if redis_auth else None
        if redis_auth is None and target.get('REDIS_PASSWORD'):
            problems.append('Redis: no known password (file or backups) is accepted, or Redis is down.')
        plan = _rotation.plan_rollback(target, {}, state)
        if self.check_mode:
            return ([k for k, v in (('postgres', plan['postgres'] and state['postgres_verifier'] is not None),
                                    ('redis', plan['redis_add'] or plan['redis_remove'])) if v], problems)
        if plan['postgres'] and state['postgres_verifier'] is not None:
            try:
                self.live.pg_set_password(target['POSTGRES_PASSWORD'])
                restored.append('postgres')
            except _rotation.RotationError as exc:
                problems.append(str(exc))
        if redis_auth and (plan['redis_add'] or plan['redis_remove']):
            try:
                # Add first, then authenticate with the target value to remove the others.
                if plan['redis_add']:
                    self.live.redis_change(redis_auth, add=plan['redis_add'])
                if plan['redis_remove']:
                    self.live.redis_change(target['REDIS_PASSWORD'], remove=plan['redis_remove'])
                restored.append('redis')
            except _rotation.RotationError as exc:
                problems.append(str(exc))
        return restored, problems

    def rollback(self):
        result = self.plan()
        old_data, dummy, dummy2, old = self.old_values_with_data()
        data, info, envfile, current = self.read_env()
        differ = [k for k in _rotation.SUPPORTED_SECRETS if old.get(k) != current.get(k)]
        restored, problems = self.restore_live(old, [current.get('REDIS_PASSWORD'), old.get('REDIS_PASSWORD')],
                                               envfile)
        if data != old_data:
            if not self.check_mode:
                _envfile.atomic_write(self.path, old_data, mode=info.st_mode & 0o7777, uid=info.st_uid, gid=info.st_gid)
            restored.append('env_file')
        result['recreate_services'] = _rotation.plan_services(self.config, differ)['recreate'] if differ else []
        result.update(restored=restored, changed=bool(restored))
        if problems:
            raise _rotation.RotationError('Rollback incomplete: %s' % ' '.join(problems), 'rollback')
        return result

    def old_values_with_data(self):
        if not self.p['backup_file']:
            raise _rotation.RotationError('backup_file is required for phase=%s.' % self.p['phase'], 'preflight')
        return self.read_env(self.p['backup_file'])

    def sync(self):
        result = self.plan()
        dummy, dummy2, envfile, current = self.read_env()
        candidates = [current.get('REDIS_PASSWORD')]
        for name in _envfile.list_backups(self.path):
            try:
                candidates.append(self.read_env(name)[3].get('REDIS_PASSWORD'))
            except (_rotation.RotationError, _envfile.EnvFileError):
                continue
        restored, problems = self.restore_live(current, candidates, envfile)
        result.update(restored=restored, changed=bool(restored), recreate_services=[])
        if problems:
            raise _rotation.RotationError('Repair incomplete: %s' % ' '.join(problems), 'sync')
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phase=dict(type='str', required=True, choices=['plan', 'apply', 'verify', 'rollback', 'sync']),
            project_dir=dict(type='path', required=True),
            registry_name=dict(type='str', required=True),
            env_file=dict(type='str', default='.env.operator'),
            compose_file=dict(type='str', default='docker-compose.operator.yml'),
            secrets=dict(type='list', elements='str', default=[], no_log=False,
                         choices=list(_rotation.SUPPORTED_SECRETS)),
            backup_file=dict(type='path'),
            backup_keep=dict(type='int', default=10),
            secret_length=dict(type='int', default=_secrets.DEFAULT_SECRET_BYTES, no_log=False),
            registry_port=dict(type='int', default=8080),
            drop_old_redis_password=dict(type='bool', default=True, no_log=False),
        ),
        required_if=[('phase', 'verify', ['backup_file']), ('phase', 'rollback', ['backup_file'])],
        supports_check_mode=True,
    )
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib('docker (Debian: python3-docker)'))
    params = module.params
    if params['backup_keep'] < 0:
        module.fail_json(msg='backup_keep must be 0 (keep all) or more.')
    name = params['registry_name']
    try:
        live = _rotation.Live(DockerExecutor(), dict((s, '%s-%s' % (name, s)) for s in ('db', 'redis', 'registry')),
                              None, None, params['registry_port'])
        rotation = Rotation(module, params, live, compose_config(module, params), check_mode=module.check_mode)
        phase = params['phase']
        if phase == 'plan':
            result = rotation.plan()
            result['changed'] = False
        else:
            result = getattr(rotation, phase)()
    except (_rotation.RotationError, _envfile.EnvFileError, _secrets.SecretError) as exc:
        module.fail_json(msg=str(exc), step=getattr(exc, 'step', None) or params['phase'])
    except docker.errors.DockerException as exc:
        module.fail_json(msg='Docker API error during phase %s: %s' % (params['phase'], type(exc).__name__),
                         step=params['phase'])
    result.setdefault('changed', False)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
