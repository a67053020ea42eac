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
  - Every rotation is journaled on the host in C(<env_file>.rotation.json) (mode C(0600), atomic writes, no secret
    value; it holds the keys, the fingerprints before and after, the backup it belongs to, the step reached and when). A step is
    written to the journal before the live change it names is made, so a run that stops anywhere can be finished or
    rolled back by the next one.
  - O(phase=status) reads the journal and, when a rotation is unfinished, probes PostgreSQL and Redis and returns
    RV(decision) (V(forward) when the new values are in C(.env.operator) and live, V(back) when they are not,
    V(refuse) when the file holds values from neither side) with a one-line RV(reason). Read-only.
  - O(phase=begin) checks that the file matches the live credentials, backs up C(.env.operator)
    (C(<file>.<timestamp>.bak), mode C(0600), the previous values), generates fresh values into
    C(<env_file>.pending) (mode C(0600), the pending values) and starts the journal.
  - O(phase=apply) makes the live steps of the staged rotation, O(step) at a time or all of them. V(redis_add) adds the
    new Redis password next to the old one (C(ACL SETUSER default) with its SHA-256, C(ACL SAVE)), V(env_write)
    rewrites C(.env.operator) atomically, V(pg_alter) sets the new PostgreSQL password with C(ALTER ROLE ... PASSWORD
    '<SCRAM-SHA-256 verifier>'), the verifier being computed by the module so that the plaintext never reaches the
    server, its log or C(pg_stat_activity). Without O(step) and without an unfinished rotation, it stages one first.
    Every step is idempotent.
  - After the live steps the caller recreates RV(recreate_services) (compose copies the C(secrets) into a container when
    it creates it; a changed value is not seen as a change by C(docker compose up)) and journals it with
    O(phase=record) O(step=recreated).
  - O(phase=verify) checks that the new credentials are accepted and the old ones refused (PostgreSQL login, Redis
    C(AUTH), C(X-Internal-Key) on the registry's C(/internal/status)) and drops the old Redis password, so that Redis
    accepts exactly one.
  - O(phase=finish) closes the journal with O(outcome) and removes the pending values; a completed rotation starts the
    age of the new values.
  - O(phase=rollback) puts the old live credentials back and restores C(.env.operator) byte for byte from
    O(backup_file) (default the unfinished rotation's backup); the caller then recreates RV(recreate_services).
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
      - O(phase=begin) generates fresh values on every run (a retry never reuses the values of a failed attempt). The
        steps of O(phase=apply), O(phase=rollback) and O(phase=sync) are idempotent.
requirements:
  - Docker SDK for Python (Debian C(python3-docker)) and the docker compose v2 CLI plugin on the host.
options:
  phase:
    description: The step to run, see the description.
    type: str
    choices: [plan, status, begin, apply, record, verify, finish, rollback, sync]
    required: true
  step:
    description:
      - With O(phase=apply), the one live step to make (V(redis_add), V(env_write), V(pg_alter)); all of them when
        not set.
      - With O(phase=record), the step the caller made (V(recreated)).
    type: str
    choices: [redis_add, env_write, pg_alter, recreated]
  outcome:
    description: With O(phase=finish), how the unfinished rotation ends.
    type: str
    choices: [completed, rolled_back, repaired]
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
    description:
      - The keys to rotate. Empty means all of them.
      - The credentials the collection declares (C(POSTGRES_PASSWORD), C(REDIS_PASSWORD), C(INTERNAL_API_KEY) today;
        lookup C(theprotocol.operator.credentials)); any other key fails before a change, naming the valid ones.
    type: list
    elements: str
    default: []
  backup_file:
    description:
      - The backup that holds the old values, for O(phase=verify) and O(phase=rollback). Default the backup of the
        unfinished rotation recorded in the journal.
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

- name: Close the journal
  theprotocol.operator.credential_rotate:
    phase: finish
    outcome: completed
    project_dir: /opt/theprotocol/acme
    registry_name: acme

- name: What a later run would do with an unfinished rotation
  theprotocol.operator.credential_rotate:
    phase: status
    project_dir: /opt/theprotocol/acme
    registry_name: acme
  register: rotation_status
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
decision:
  description: O(phase=status) only. What to do with an unfinished rotation (V(forward), V(back), V(refuse)), or V(none).
  returned: success
  type: str
  sample: forward
reason:
  description: O(phase=status) only. The decision in one line (keys, start, step reached, why); never a value.
  returned: success
  type: str
  sample: "the rotation of POSTGRES_PASSWORD started 2026-11-27T18:00:00Z stopped at step postgres_altered; the new
    values are in .env.operator and live: rolling forward."
journal:
  description: O(phase=status) only. The last rotation recorded (state, step, keys, times, backup); no value.
  returned: success
  type: dict
  sample: {state: in_progress, step: env_written, keys: [POSTGRES_PASSWORD], started: "2026-11-27T18:00:00Z",
           updated: "2026-11-27T18:00:02Z", backup_file: /opt/theprotocol/acme/.env.operator.20261127T180000Z.bak,
           done: [redis_added, env_written]}
secret_ages:
  description: O(phase=status) only. Per secret, since when its current value is in force and its age in days
    (V(null) with a note when unknown).
  returned: success
  type: dict
  sample: {POSTGRES_PASSWORD: {since: "2026-11-27T18:00:05Z", days: 0, note: null}}
step:
  description: The journal step reached (O(phase=begin), O(phase=apply), O(phase=record)).
  returned: success
  type: str
  sample: postgres_altered
changed_keys:
  description: O(phase=sync) only. Keys whose live credential was changed (their consumers are in RV(recreate_services)).
  returned: success
  type: list
  elements: str
  sample: [POSTGRES_PASSWORD]
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack as stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets

try:
    import docker
    HAS_DOCKER = True
except ImportError:
    HAS_DOCKER = False

# The credentials whose live state this module changes (declared in _credentials).
PG = _rotation.PG_KEY          # ALTER ROLE with a SCRAM verifier
REDIS = _rotation.REDIS_KEY    # ACL SETUSER, two passwords during the roll-over


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
        self.module.no_log_values.update(_secrets.no_log_values(values))

    def read_env(self, path=None):
        data, info = _envfile.read(path or self.path)
        if data is None:
            raise _rotation.RotationError('%s does not exist. Deploy the stack (operator_stack) first.'
                                          % (path or self.path), 'preflight')
        envfile = _envfile.EnvFile.from_bytes(data, 'env file %s' % (path or self.path))
        values = dict((k, envfile.value(k)) for k in _credentials.KEYS)
        self.protect(*values.values())
        return data, info, envfile, values

    def plan(self):
        services = _rotation.plan_services(self.config, self.keys)
        return dict(rotate=self.keys, recreate_services=services['recreate'], live_services=services['live'])

    def pg_names(self, envfile):
        return envfile.value('POSTGRES_USER') or 'postgres', envfile.value('POSTGRES_DB') or envfile.value(
            'POSTGRES_USER') or 'postgres'

    # ------------------------------------------------------------------ journal
    def journal(self):
        try:
            return _rotation_journal.load(self.path)
        except _rotation_journal.JournalError as exc:
            raise _rotation.RotationError(str(exc), 'journal') from None

    def write_journal(self, doc):
        if self.check_mode:
            return
        info = os.stat(self.path)
        try:
            _rotation_journal.write(self.path, doc, uid=info.st_uid, gid=info.st_gid)
        except _rotation_journal.JournalError as exc:
            raise _rotation.RotationError(str(exc), 'journal') from None

    def unfinished(self):
        doc = self.journal()
        rotation = _rotation_journal.unfinished(doc)
        if rotation is None:
            raise _rotation.RotationError('No unfinished rotation is recorded in %s: start one with phase=begin.'
                                          % _rotation_journal.journal_path(self.path), 'journal')
        return doc, rotation

    def read_values(self, path, keys):
        data, dummy = _envfile.read(path)
        if data is None:
            return None
        values = _rotation.env_values(data, keys)
        self.protect(*values.values())
        return values

    def pending(self, rotation):
        """The PENDING values of the unfinished rotation (checked against the journal's fingerprints)."""
        values = self.read_values(_rotation_journal.pending_path(self.path), rotation['keys'])
        if values is None or _rotation.fingerprints(values) != rotation['fingerprints']['after']:
            raise _rotation.RotationError(
                'The pending values of the unfinished rotation (%s) are missing or changed: it cannot go forward. Roll it '
                'back (theprotocol_rotation_action=rollback).' % _rotation_journal.pending_path(self.path), 'journal')
        return values

    def previous(self, rotation):
        values = self.read_values(rotation['backup_file'], rotation['keys'])
        if values is None or _rotation.fingerprints(values) != rotation['fingerprints']['before']:
            return None
        return values

    def write_pending(self, values, info):
        envfile = _envfile.EnvFile.parse('# Pending values of an unfinished secret rotation (see %s).\n'
                                         % os.path.basename(_rotation_journal.journal_path(self.path)))
        for key in sorted(values):
            envfile.set(key, values[key])
        _envfile.atomic_write(_rotation_journal.pending_path(self.path), envfile.render().encode('utf-8'), mode=0o600,
                              uid=info.st_uid, gid=info.st_gid)

    def remove_pending(self):
        try:
            os.unlink(_rotation_journal.pending_path(self.path))
        except FileNotFoundError:
            pass

    def status(self):
        """The recorded rotation and, when it is unfinished, what to do with it (from live probes)."""
        result = self.plan()
        doc = self.journal()
        rotation = doc.get('rotation') or {}
        shown = ('state', 'step', 'keys', 'started', 'updated', 'backup_file', 'done')
        result['journal'] = dict((k, rotation.get(k)) for k in shown)
        data, dummy, envfile, current = self.read_env()
        result['secret_ages'] = _rotation_journal.secret_ages(doc, _rotation.fingerprints(
            dict((k, v) for k, v in current.items() if v)), now=self.now)
        if _rotation_journal.unfinished(doc) is None:
            result.update(decision=_rotation_journal.NONE, reason='no unfinished rotation')
            return result
        keys = rotation['keys']
        self.live.pg_user, self.live.pg_db = self.pg_names(envfile)
        old = self.previous(rotation)
        try:
            new = self.pending(rotation)
        except _rotation.RotationError:
            new = None
        in_file = dict((k, current.get(k)) for k in keys)
        if new is None and _rotation.fingerprints(in_file) == rotation['fingerprints']['after']:
            new = in_file  # the pending file is gone, but .env.operator already holds the new values
        facts = {'env': _rotation.fingerprints(in_file),
                 'backup': _rotation.fingerprints(old) if old else None, 'postgres': None, 'redis': None}
        if PG in keys:
            try:
                verifier = self.live.pg_verifier()
            except _rotation.RotationError:
                verifier = None
            for side, values in (('new', new), ('old', old)):
                if verifier and values and _rotation.scram_verifier_matches(values[PG], verifier):
                    facts['postgres'] = side
            if verifier and facts['postgres'] is None:
                facts['postgres'] = 'other'
        if REDIS in keys:
            candidates = [current.get(REDIS)] + [v[REDIS] for v in (new, old) if v]
            auth = _rotation.first_usable(candidates, self.live.redis_login_ok)
            if auth:
                hashes = self.live.redis_hashes(auth)
                facts['redis'] = dict((side, bool(values) and _rotation.redis_password_hash(values[REDIS])
                                       in hashes) for side, values in (('new', new), ('old', old)))
        decision, reason = _rotation_journal.decide(doc, facts)
        result.update(decision=decision, reason=reason, facts=facts,
                      recreate_services=_rotation.plan_services(self.config, keys)['recreate'],
                      backup_file=rotation['backup_file'])
        return result

    # ------------------------------------------------------------------ begin / apply
    def begin(self):
        """Stage a rotation: preflight, backup (PREVIOUS), new values in the pending file (PENDING), journal."""
        result = self.plan()
        data, info, envfile, old = self.read_env()
        doc = self.journal()
        if _rotation_journal.unfinished(doc):
            rotation = doc['rotation']
            raise _rotation.RotationError(
                'An unfinished rotation of %s (started %s, step %s) is recorded in %s. Run the rotation again: it '
                'finishes or rolls back that one first (theprotocol_rotation_action=resume or rollback). Nothing was '
                'changed.' % (', '.join(rotation['keys']), rotation['started'], rotation['step'],
                              _rotation_journal.journal_path(self.path)), 'preflight')
        missing = [k for k in self.keys if not old.get(k)]
        if missing:
            raise _rotation.RotationError('%s has no value for %s: there is nothing live to rotate. Deploy the stack '
                                          '(operator_stack) first.' % (self.path, ', '.join(missing)), 'preflight')
        self.live.pg_user, self.live.pg_db = self.pg_names(envfile)
        # Preflight: the file must match the live credentials, or the rotation would lock the stack out.
        if PG in self.keys and not _rotation.scram_verifier_matches(
                old[PG], self.live.pg_verifier()):
            raise _rotation.RotationError(
                '%s in %s is not the live password of role %s (was the stack rotated the guide\'s way?). '
                'Repair it first (phase=sync, or the secret_rotation role with secret_rotation_action=repair). '
                'Nothing was changed.' % (PG, self.path, self.live.pg_user), 'preflight')
        if REDIS in self.keys:
            self.live.redis_hashes(old[REDIS])
        before = _rotation.fingerprints(dict((k, old[k]) for k in self.keys))
        result['fingerprints'] = dict(before=before)
        if self.check_mode:
            result['changed'] = True
            return result
        # Fresh values on every start: a retry never reuses values of a failed attempt.
        new = dict((k, _credentials.generate(k, self.p['secret_length'])) for k in self.keys)
        self.protect(*new.values())
        result['backup_file'] = _envfile.backup(self.path, data, now=self.now)
        result['removed_backups'] = _envfile.prune_backups(self.path, self.p['backup_keep'])
        result['fingerprints']['after'] = _rotation.fingerprints(new)
        try:
            self.write_pending(new, info)
            self.write_journal(_rotation_journal.begin(doc, self.keys, before, result['fingerprints']['after'],
                                                       result['backup_file'], now=self.now))
        except (_rotation.RotationError, _envfile.EnvFileError):
            self.remove_pending()  # no journal, no pending values: nothing was staged
            raise
        result.update(changed=True, step='staged')
        return result

    APPLY_STEPS = ('redis_add', 'env_write', 'pg_alter')
    STEP_RECORD = {'redis_add': 'redis_added', 'env_write': 'env_written', 'pg_alter': 'postgres_altered'}

    def apply(self):
        """The live steps of the staged rotation (all of them, or ``step``); a new rotation is staged first
        when none is unfinished and no ``step`` is given. Each step is journaled before it is made."""
        if self.p.get('step') and self.p['step'] not in self.APPLY_STEPS:
            raise _rotation.RotationError('step=%s is not a step of phase=apply (%s).'
                                          % (self.p['step'], ', '.join(self.APPLY_STEPS)), 'preflight')
        if not self.p.get('step'):
            result = self.begin() if not _rotation_journal.unfinished(self.journal()) else self.plan()
            if self.check_mode:
                return result
            steps = self.APPLY_STEPS
        else:
            result, steps = self.plan(), [self.p['step']]
        for step in steps:
            self.apply_step(step)
        doc, rotation = self.unfinished()
        result.update(changed=True, step=rotation['step'], backup_file=rotation['backup_file'],
                      rotate=rotation['keys'], fingerprints=rotation['fingerprints'],
                      recreate_services=_rotation.plan_services(self.config, rotation['keys'])['recreate'])
        return result

    def apply_step(self, step):
        doc, rotation = self.unfinished()
        keys = rotation['keys']
        new = self.pending(rotation)
        data, info, envfile, current = self.read_env()
        self.live.pg_user, self.live.pg_db = self.pg_names(envfile)
        record = self.STEP_RECORD[step]
        if self.check_mode:
            return
        self.write_journal(_rotation_journal.advance(doc, record, now=self.now))      # intent first
        if step == 'redis_add' and REDIS in keys:
            new_hash = _rotation.redis_password_hash(new[REDIS])
            old = self.previous(rotation) or {}
            auth = _rotation.first_usable([current.get(REDIS), old.get(REDIS),
                                           new[REDIS]], self.live.redis_login_ok)
            if auth is None:
                raise _rotation.RotationError('Redis: no known password is accepted (or Redis is down).', 'redis')
            if new_hash not in self.live.redis_hashes(auth):
                self.live.redis_change(auth, add=[new_hash])
        elif step == 'env_write':
            for key in keys:
                envfile.set(key, new[key])
            rendered = envfile.render().encode('utf-8')
            if rendered != data:
                _envfile.atomic_write(self.path, rendered, mode=info.st_mode & 0o7777, uid=info.st_uid,
                                      gid=info.st_gid)
        elif step == 'pg_alter' and PG in keys:
            if not _rotation.scram_verifier_matches(new[PG], self.live.pg_verifier()):
                self.live.pg_set_password(new[PG])
        doc, rotation = self.unfinished()
        self.write_journal(_rotation_journal.advance(doc, record, now=self.now, done=record))

    def record(self):
        """Journal a step the caller made (``recreated``: the consumers were recreated)."""
        result = self.plan()
        if self.p['step'] != 'recreated':
            raise _rotation.RotationError('phase=record takes step=recreated (the live steps are phase=apply).',
                                          'preflight')
        doc, rotation = self.unfinished()
        self.write_journal(_rotation_journal.advance(doc, self.p['step'], now=self.now, done=self.p['step']))
        result.update(changed=True, step=self.p['step'])
        return result

    def finish(self):
        """Close the unfinished rotation (completed, rolled_back or repaired) and remove its pending values."""
        result = self.plan()
        doc = self.journal()
        if _rotation_journal.unfinished(doc) is None:
            rotation = doc.get('rotation') or dict(keys=[], fingerprints=dict(before={}, after={}), backup_file='')
            result.update(changed=False, state=rotation.get('state'), journal=rotation)
            return result
        closed = _rotation_journal.finish(doc, self.p['outcome'], now=self.now)
        self.write_journal(closed)
        if not self.check_mode:
            self.remove_pending()
        rotation = closed['rotation']
        result.update(changed=True, state=self.p['outcome'], journal=rotation,
                      recreate_services=_rotation.plan_services(self.config, rotation['keys'])['recreate'])
        return result

    # ------------------------------------------------------------------ verify
    def backup_file(self):
        """``backup_file``, or the backup of the unfinished rotation in the journal."""
        if self.p['backup_file']:
            return self.p['backup_file']
        rotation = _rotation_journal.unfinished(self.journal())
        if rotation is None:
            raise _rotation.RotationError('backup_file is required for phase=%s when no unfinished rotation is '
                                          'recorded.' % self.p['phase'], 'preflight')
        return rotation['backup_file']

    def old_values(self):
        dummy, dummy2, dummy3, old = self.read_env(self.backup_file())
        return old

    def journal_step(self, step, done=False):
        doc = self.journal()
        if _rotation_journal.unfinished(doc) is not None:
            self.write_journal(_rotation_journal.advance(doc, step, now=self.now, done=step if done else None))

    def accepts(self, probe, value):
        """Whether the stack accepts ``value`` on ``probe`` (a probe of _credentials): True, False (refused),
        or None (neither: the registry answered the internal key with something else than 200 or 401)."""
        if probe == _credentials.POSTGRES:
            return self.live.pg_login_ok(value)
        if probe == _credentials.REDIS:
            return self.live.redis_login_ok(value)
        if probe == _credentials.INTERNAL_KEY_PROBE:
            return {200: True, 401: False}.get(self.live.internal_key_status(value))
        raise _rotation.RotationError('Internal error: no probe %s.' % probe, 'verify')

    def verify(self):
        """New values accepted, old ones refused (checks ``<probe>_new_accepted``, ``<probe>_old_refused``);
        the Redis roll-over ends here, last: its old password is dropped once the new one is accepted."""
        result = self.plan()
        old = self.old_values()
        dummy, dummy2, envfile, new = self.read_env()
        self.live.pg_user, self.live.pg_db = self.pg_names(envfile)
        checks = {}
        rollover = _credentials.REDIS_ACL_ROLLOVER
        for key in sorted(self.keys, key=lambda k: _credentials.get(k).apply == rollover):
            probe = _credentials.get(key).probe
            checks[probe + '_new_accepted'] = self.accepts(probe, new[key]) is True
            if _credentials.get(key).apply != rollover:
                checks[probe + '_old_refused'] = self.accepts(probe, old[key]) is False
            elif self.p['drop_old_redis_password'] and checks[probe + '_new_accepted']:
                old_hash = _rotation.redis_password_hash(old[key])
                if not self.check_mode and old_hash in self.live.redis_hashes(new[key]):
                    self.live.redis_change(new[key], remove=[old_hash])
                    result['changed'] = True
                checks[probe + '_old_refused'] = self.check_mode or self.accepts(probe, old[key]) is False
        result['checks'] = checks
        failed = sorted(k for k, ok in checks.items() if not ok)
        if failed:
            raise _rotation.RotationError('Verification failed: %s.' % ', '.join(failed), 'verify')
        self.journal_step('verified', done=True)
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
        if redis_auth is None and target.get(REDIS):
            problems.append('Redis: no known password (file or backups) is accepted, or Redis is down.')
        plan = _rotation.plan_rollback(target, {}, state)
        if self.check_mode:
            return ([k for k, v in (('postgres', plan['postgres'] and state['postgres_verifier'] is not None),
                                    ('redis', plan['redis_add'] or plan['redis_remove'])) if v], problems)
        if plan['postgres'] and state['postgres_verifier'] is not None:
            try:
                self.live.pg_set_password(target[PG])
                restored.append('postgres')
            except _rotation.RotationError as exc:
                problems.append(str(exc))
        if redis_auth and (plan['redis_add'] or plan['redis_remove']):
            try:
                # Add first, then authenticate with the target value to remove the others.
                if plan['redis_add']:
                    self.live.redis_change(redis_auth, add=plan['redis_add'])
                if plan['redis_remove']:
                    self.live.redis_change(target[REDIS], remove=plan['redis_remove'])
                restored.append('redis')
            except _rotation.RotationError as exc:
                problems.append(str(exc))
        return restored, problems

    def rollback(self):
        result = self.plan()
        old_data, dummy, dummy2, old = self.old_values_with_data()
        self.journal_step('rolled_back_live')
        data, info, envfile, current = self.read_env()
        differ = [k for k in _rotation.SUPPORTED_SECRETS if old.get(k) != current.get(k)]
        restored, problems = self.restore_live(old, [current.get(REDIS), old.get(REDIS)],
                                               envfile)
        if data != old_data:
            if not self.check_mode:
                _envfile.atomic_write(self.path, old_data, mode=info.st_mode & 0o7777, uid=info.st_uid, gid=info.st_gid)
            restored.append('env_file')
        result['recreate_services'] = _rotation.plan_services(self.config, differ)['recreate'] if differ else []
        result.update(restored=restored, changed=bool(restored), backup_file=self.backup_file())
        if problems:
            raise _rotation.RotationError('Rollback incomplete: %s' % ' '.join(problems), 'rollback')
        self.journal_step('rolled_back_live', done=True)
        return result

    def old_values_with_data(self):
        return self.read_env(self.backup_file())

    def sync(self):
        result = self.plan()
        dummy, dummy2, envfile, current = self.read_env()
        candidates = [current.get(REDIS)]
        for name in _envfile.list_backups(self.path):
            try:
                candidates.append(self.read_env(name)[3].get(REDIS))
            except (_rotation.RotationError, _envfile.EnvFileError):
                continue
        rotation = _rotation_journal.unfinished(self.journal())
        if rotation is not None:
            candidates.append((self.read_values(_rotation_journal.pending_path(self.path), rotation['keys']) or {})
                              .get(REDIS))
        restored, problems = self.restore_live(current, candidates, envfile)
        # Every service that reads a key whose live credential changed is recreated by the caller, so that
        # none keeps a connection pool or a copy made from another value.
        changed_keys = [k for k in _credentials.KEYS if _credentials.get(k).kind in restored]
        result.update(restored=restored, changed=bool(restored), changed_keys=changed_keys,
                      recreate_services=_rotation.plan_services(self.config, changed_keys)['recreate']
                      if changed_keys else [])
        if problems:
            raise _rotation.RotationError('Repair incomplete: %s' % ' '.join(problems), 'sync')
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phase=dict(type='str', required=True,
                       choices=['plan', 'status', 'begin', 'apply', 'record', 'verify', 'finish', 'rollback', 'sync']),
            step=dict(type='str', choices=['redis_add', 'env_write', 'pg_alter', 'recreated']),
            outcome=dict(type='str', choices=['completed', 'rolled_back', 'repaired']),
            project_dir=dict(type='path', required=True),
            registry_name=dict(type='str', required=True),
            env_file=dict(type='str', default='.env.operator'),
            compose_file=dict(type='str', default='docker-compose.operator.yml'),
            secrets=dict(type='list', elements='str', default=[], no_log=False),
            backup_file=dict(type='path'),
            backup_keep=dict(type='int', default=10),
            secret_length=dict(type='int', default=_secrets.DEFAULT_SECRET_BYTES, no_log=False),
            registry_port=dict(type='int', default=8080),
            drop_old_redis_password=dict(type='bool', default=True, no_log=False),
        ),
        required_if=[('phase', 'record', ['step']), ('phase', 'finish', ['outcome'])],
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
