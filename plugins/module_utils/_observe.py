# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One observation of a deployed operator stack: the facts (private to this collection).

A :class:`Gatherer` reads, once per module call, the facts that the judgements need (:data:`FACTS`):
from Docker through ``_stack`` (container states, logs, image digests, the few commands that run
inside containers), from files (the env file, the certs volume, the SPIRE agent's data directory,
the x509pop certificate, the rotation journal) and from the network through ``_checklist_probe``
(the ``/health`` probe and the mTLS probe matrix). Files are read first; then every Docker and
network round trip runs in parallel.

The facts are a plain dict of JSON values: no bytes and no datetime (times are RFC 3339 strings,
certificates PEM text, logs the lines of ``docker logs --timestamps``), so that a fact set recorded
on the lab (``security_checklist`` with ``return_facts: true``) is judged again as it is, in a unit
test (``tests/unit/plugins/module_utils/fixtures/checklist_facts/``). No secret value of the env
file is a fact: the credentials are reduced to what the checks judge of them (set, weakness, reuse;
ages from the rotation journal) and the SVID key to whether it belongs to the SVID. The gatherer
keeps the secret values (:meth:`Gatherer.read_env`) for the live password probes and for masking.
Free text read from the stack (log lines, command output, error messages) is kept as read: scrub
the facts (``_checklist.scrub`` with those values) before they leave the module.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import ssl
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist_probe as probe
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _live_auth
from ansible_collections.theprotocol.operator.plugins.module_utils import _probe_certs
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u

try:
    from docker.errors import DockerException, NotFound
except ImportError:  # the module reports the missing package (_stack.fail_on_missing_requirements) before gathering
    class DockerException(Exception):
        pass

    class NotFound(DockerException):
        pass

# The facts, in the order they are gathered: name -> what it holds. The first five (BASE_FACTS) are
# always gathered; the others only when a selected check names them (_checklist.CHECKS[...].facts).
FACTS = {
    'checked_at': 'when the observation started (RFC 3339, UTC, microseconds); the judgements\' "now"',
    'stack': 'what is observed: registry_name, operator_name, trust_domain, registry_spiffe_id, stack_dir, '
             'federation_host, federation_port',
    'options': 'the thresholds the facts are judged with (OPTIONS, from the module\'s options)',
    'env': 'the env file: path, stat (lstat: exists, is_symlink, is_file, mode, uid, gid), settings (the values of '
           'its public keys, _secrets.PUBLIC_ENV_KEYS), secret_keys (the names of the others), credentials (key -> '
           'set, weakness) and reused (keys holding the same value) of _checklist.credential_facts; no secret value',
    'containers': 'service -> container_facts() of each service of _stack.SERVICES (exists False when missing)',
    'agent_healthcheck': '`spire-agent healthcheck` in the agent container: exit_code (None when it did not run), '
                         'output (the last 2000 characters)',
    'agent_svid': 'PEM of the SPIRE agent\'s own SVID from its data directory (agent-data.json), or None',
    'agent_log': 'the last 200 lines of the spire-agent log (docker logs --timestamps; incident_evidence: its '
                 'agent_log_lines)',
    'cert_writer_log': 'the last 50 lines of the cert-writer log (docker logs --timestamps; incident_evidence: its '
                       'log_lines)',
    'registry_log': 'the registry log of the last eventstore_window seconds (docker logs --timestamps)',
    'svid_files': 'the certs volume: certs_dir, svid_pem, bundle_pem (the volume\'s, else spire/bundle.pem of the '
                  'stack directory), key (svid_key_facts(): present, matches_svid, error) and written_at (the '
                  '..data switch, else svid.pem\'s mtime)',
    'x509pop_cert': 'PEM of spire/x509pop.crt of the stack directory, or None',
    'federation_health': 'GET /health on the federation port without a client certificate: status, error, '
                         'tls_refused, reason and served_certificate_pem (the leaf nginx-federation presented)',
    'mtls_probes': 'the mTLS probe matrix: matrix (probe id -> one outcome per _checklist.FEDERATION_ENDPOINTS '
                   'entry: method, path, status, error, tls_refused, reason), unavailable (probe id -> why it was '
                   'not made), identities (probe id -> the SPIFFE ID it presented)',
    'live_auth': 'credential key -> the _live_auth verdict (ok, state, reason, outcomes) of its value against its '
                 'running server; keys without a value or a running server are absent',
    'redis_passwords': 'how many passwords Redis accepts for the stack user: count (None when not known) and reason',
    'images': 'service -> the image it runs (ref, running_digests, registry_digest, error), existing containers only',
    'journal': 'the rotation journal: path, error (why it cannot be read), rotation (the last rotation, without its '
               'fingerprints) and secret_ages (key -> since, days, note, _rotation_journal.secret_ages)',
}
FACT_NAMES = tuple(FACTS)
BASE_FACTS = ('checked_at', 'stack', 'options', 'env', 'containers')
# The module options that are thresholds of the judgements (the fact "options").
OPTIONS = ('cert_writer_interval', 'svid_min_remaining_seconds', 'served_svid_grace', 'x509pop_warn_days',
           'eventstore_window', 'secret_max_age_days')

CERTS_MOUNT = '/certs'
AGENT_DATA_MOUNT = '/opt/spire/data/agent'
# Of a container's environment, only these public settings are facts.
CONTAINER_ENV_KEYS = ('MINTING_AUTHORITY', 'EVENTSTORE_MTLS_REQUIRED')
# Parallel round trips (the mTLS matrix alone is 7 probes x 5 endpoints).
MAX_WORKERS = 12


class ObserveError(Exception):
    """The stack cannot be observed (an env file that cannot be parsed); the message never holds a secret value."""


# --------------------------------------------------------------------------- facts from data (pure)

def isoformat(value):
    """A datetime as the facts write times: RFC 3339 UTC with microseconds; None stays None."""
    if value is None:
        return None
    return value.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _text(data):
    """File content as text (PEM is ASCII); None stays None."""
    return None if data is None else data.decode('utf-8', 'replace')


def container_facts(attrs, name):
    """Public facts of the container ``name`` from its ``docker inspect`` data (``attrs``; None: it does not
    exist). Of its environment only :data:`CONTAINER_ENV_KEYS`. ``running``: running, not paused, not
    restarting; ``started_at``/``finished_at`` as Docker writes them."""
    if not attrs:
        return dict(exists=False, name=name)
    state = attrs.get('State') or {}
    config = attrs.get('Config') or {}
    env = dict(item.split('=', 1) for item in config.get('Env') or [] if '=' in item)
    return dict(exists=True, name=name, status=state.get('Status'),
                running=bool(state.get('Running')) and not state.get('Paused') and not state.get('Restarting'),
                restarting=bool(state.get('Restarting')), health=(state.get('Health') or {}).get('Status'),
                started_at=state.get('StartedAt'), finished_at=state.get('FinishedAt'),
                exit_code=state.get('ExitCode'), oom_killed=bool(state.get('OOMKilled')),
                restart_count=attrs.get('RestartCount', 0), image_ref=config.get('Image'), image_id=attrs.get('Image'),
                env=dict((key, env.get(key)) for key in CONTAINER_ENV_KEYS))


def env_facts(env, path, stat):
    """The fact ``env`` of the parsed env file ``env`` (an ``_envfile.EnvFile``) at ``path`` with its
    ``probe.lstat_info`` ``stat``. Its secret values (``_secrets.is_secret``) are not in it."""
    values = dict((key, env.value(key)) for key in env.keys())
    out = dict(path=path, stat=stat,
               settings=dict((k, v) for k, v in values.items() if k in _secrets.PUBLIC_ENV_KEYS),
               secret_keys=[k for k, v in values.items() if _secrets.is_secret(k, v)])
    out.update(cl.credential_facts(dict((k, values[k]) for k in cl.SECRET_KEYS if k in values)))
    return out


def svid_key_facts(svid_pem, key_pem):
    """What ``svid_valid`` needs of svid_key.pem, not the key: ``dict(present, matches_svid, error)``
    (``_x509.svid_verdict``; ``matches_svid`` is None when the SVID cannot be read)."""
    if key_pem is None:
        return dict(present=False, matches_svid=None, error=None)
    verdict = x509u.svid_verdict(svid_pem, key_pem, labels=cl.SVID_FILE_LABELS)
    return dict(present=True, matches_svid=verdict['key_matches'], error=verdict['key_error'])


def agent_svid_pem(data):
    """PEM of the agent's own SVID from SPIRE's agent-data.json (public certificates only), or None."""
    try:
        document = json.loads(data.decode('utf-8'))
        return b''.join(base64.b64decode(item) for item in document.get('svid') or [])
    except (ValueError, TypeError, AttributeError):
        return None


def probe_outcome(res):
    """A ``probe.https_request`` outcome as a fact: the presented certificate as PEM, not DER."""
    out = dict((k, v) for k, v in res.items() if k != 'peer_der')
    out['served_certificate_pem'] = ssl.DER_cert_to_PEM_cert(res['peer_der']) if res.get('peer_der') else None
    return out


def rotation_facts(rotation):
    """The last rotation of the journal without the fingerprints of its values."""
    if not rotation:
        return rotation
    return dict((k, v) for k, v in rotation.items() if k != 'fingerprints')


def _local(value):
    """The plan of a fact read without a round trip (see Gatherer._gather)."""
    return {}, lambda done: value


# --------------------------------------------------------------------------- the gatherer

class Gatherer:
    """Gathers the facts of the stack that ``params`` (the ``_stack`` options, and the :data:`OPTIONS`)
    locate, through the Docker ``client``.

    :meth:`gather` returns the facts named (and the base facts); :meth:`refresh` gathers some of them
    again (the runner's recheck). Each fact has a ``_plan_<name>`` method that reads files at once and
    returns ``(round trips, assemble)``: the round trips (key -> (function, arguments)) of all planned
    facts run in one thread pool, then ``assemble(results by key)`` makes the fact.
    """

    def __init__(self, client, params, now=None):
        self.client = client
        self.params = params
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self.prefix = params['registry_name']
        self.timeout = params['timeout']
        self.stack_dir = _stack.stack_dir(params)
        self.env_path = os.path.join(self.stack_dir, params['env_file'])
        self.expected_id = x509u.registry_spiffe_id(params['trust_domain'], params['operator_name'])
        self.env = None
        self.secrets = []
        self._containers = {}

    # ----------------------------------------------------------------------- entry points

    def read_env(self):
        """Parse the env file (once) and return its secret values (``_secrets.secret_values``): for the
        masking of the module's output, never a fact. Raises ObserveError."""
        if self.env is None:
            data = probe.read_file(self.env_path)
            env = _envfile.EnvFile()
            if data is not None:
                try:
                    env = _envfile.EnvFile.from_bytes(data, 'env file %s' % self.env_path)
                except _envfile.EnvFileError as exc:
                    raise ObserveError(str(exc))
            self.env = env
            self.secrets = _secrets.secret_values(env)
        return self.secrets

    def gather(self, names=FACT_NAMES):
        """The base facts and the facts ``names`` (an iterable of :data:`FACTS` names)."""
        self.read_env()
        return self._gather(set(BASE_FACTS) | set(names))

    def refresh(self, names):
        """The facts ``names`` gathered again."""
        self.read_env()
        return self._gather(set(names))

    def _gather(self, names):
        unknown = sorted(set(names) - set(FACT_NAMES))
        if unknown:
            raise ObserveError('Unknown fact(s) %s.' % ', '.join(unknown))
        plans = []
        for name in FACT_NAMES:  # in order: the base facts locate the containers the others use
            if name in names:
                jobs, assemble = getattr(self, '_plan_' + name)()
                plans.append((name, jobs, assemble))
        done = self._round_trips(dict(((name, key), job) for name, jobs, dummy in plans for key, job in jobs.items()))
        return dict((name, assemble(dict((key, done[(name, key)]) for key in jobs))) for name, jobs, assemble in plans)

    @staticmethod
    def _round_trips(jobs):
        """Run ``jobs`` (key -> (function, arguments)) in parallel; each only reads."""
        if not jobs:
            return {}
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(jobs))) as pool:
            futures = dict((key, pool.submit(fn, *args)) for key, (fn, args) in jobs.items())
            return dict((key, future.result()) for key, future in futures.items())

    # ----------------------------------------------------------------------- Docker

    def container(self, service):
        """``(container object or None, container_facts)`` of ``service`` (inspected once)."""
        if service not in self._containers:
            name = _stack.container_name(self.prefix, service)
            try:
                obj = self.client.containers.get(name)
            except NotFound:
                self._containers[service] = (None, container_facts(None, name), {})
            else:
                mounts = dict((m.get('Destination'), m.get('Source')) for m in obj.attrs.get('Mounts') or [])
                self._containers[service] = (obj, container_facts(obj.attrs, name), mounts)
        return self._containers[service][:2]

    def log_read(self, service, since=None, tail=None):
        """``docker logs --timestamps`` of ``service``: ``(lines, error)``, the lines without blank ones; ``error``
        says why the log could not be read (the container missing: no lines and no error)."""
        obj, dummy = self.container(service)
        if obj is None:
            return [], None
        kwargs = dict(stdout=True, stderr=True, timestamps=True)
        if since is not None:
            kwargs['since'] = int(since.timestamp())
        if tail is not None:
            kwargs['tail'] = tail
        try:
            raw = obj.logs(**kwargs)
        except DockerException as exc:
            return [], str(exc)
        text = raw.decode('utf-8', 'replace') if isinstance(raw, bytes) else (raw or '')
        return [line for line in text.splitlines() if line.strip()], None

    def log_lines(self, service, since=None, tail=None):
        """The lines of :meth:`log_read`; [] when unreadable."""
        return self.log_read(service, since=since, tail=tail)[0]

    def exec_in(self, service, argv, environment=None):
        """``dict(exit_code, output)`` of ``argv`` in the running container of ``service`` (``_stack.exec_run``)."""
        obj, info = self.container(service)
        if obj is None or not info['running']:
            return dict(exit_code=None, output='container not running')
        try:
            res = _stack.exec_run(obj, argv, self.timeout, read_only=True, environment=environment, stdout=True,
                                  stderr=True)
        except _stack.ExecTimeout as exc:
            return dict(exit_code=None, output=str(exc))
        except DockerException as exc:
            return dict(exit_code=None, output='exec failed: %s' % type(exc).__name__)
        return dict(exit_code=res.exit_code, output=(res.output or b'').decode('utf-8', 'replace')[-2000:])

    def volume_dir(self, service, destination, volume):
        """The host directory of ``service``'s mount at ``destination``, else of the compose volume."""
        self.container(service)
        source = self._containers[service][2].get(destination)
        if source:
            return source
        try:
            return self.client.volumes.get('%s_%s' % (self.prefix, volume)).attrs.get('Mountpoint')
        except DockerException:
            return None

    def image(self, service):
        """The image ``service`` runs against the registry's current digest of its reference; None when the
        container does not exist."""
        dummy, info = self.container(service)
        if not info.get('exists'):
            return None
        ref = info.get('image_ref')
        out = dict(ref=ref, running_digests=[], registry_digest=None, error=None)
        repo = ref.split('@', 1)[0]
        if ':' in repo.rsplit('/', 1)[-1]:
            repo = repo.rsplit(':', 1)[0]
        try:
            image = self.client.images.get(info['image_id'])
            out['running_digests'] = [d.split('@', 1)[1] for d in image.attrs.get('RepoDigests') or []
                                      if d.split('@', 1)[0] == repo]
        except DockerException as exc:
            out['error'] = 'cannot inspect the running image (%s)' % type(exc).__name__
            return out
        try:
            out['registry_digest'] = self.client.images.get_registry_data(ref).id
        except Exception as exc:  # pylint: disable=broad-except
            # A DockerException, or the SDK's requests timeout when dockerd is still waiting for an unreachable
            # registry (a host cut off the network): a fact, not a crash of the module.
            out['error'] = 'cannot ask the image registry for the current digest (%s)' % (
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return out

    # ----------------------------------------------------------------------- files

    def certs_dir(self):
        return self.volume_dir('cert-writer', CERTS_MOUNT, 'certs')

    def agent_dir(self):
        return self.volume_dir('spire-agent', AGENT_DATA_MOUNT, 'spire-agent-data')

    def _svid_paths(self):
        certs_dir = self.certs_dir()
        if not certs_dir:
            return None, None, None
        return certs_dir, os.path.join(certs_dir, 'svid.pem'), os.path.join(certs_dir, 'svid_key.pem')

    def svid_files(self):
        certs_dir, svid_path, key_path = self._svid_paths()
        svid_pem = probe.read_file(svid_path) if certs_dir else None
        key_pem = probe.read_file(key_path) if certs_dir else None
        bundle_pem = probe.read_file(os.path.join(certs_dir, 'bundle.pem')) if certs_dir else None
        if not bundle_pem:
            bundle_pem = probe.read_file(os.path.join(self.stack_dir, 'spire', 'bundle.pem'))
        written_at = None
        if certs_dir:
            written_at = probe.mtime(os.path.join(certs_dir, '..data')) or probe.mtime(svid_path)
        return dict(certs_dir=certs_dir, svid_pem=_text(svid_pem), bundle_pem=_text(bundle_pem),
                    key=svid_key_facts(svid_pem, key_pem), written_at=isoformat(written_at))

    # ----------------------------------------------------------------------- the plans, one per fact

    def _plan_checked_at(self):
        return _local(isoformat(self.now))

    def _plan_stack(self):
        params = self.params
        return _local(dict(registry_name=self.prefix, operator_name=params['operator_name'],
                           trust_domain=params['trust_domain'], registry_spiffe_id=self.expected_id,
                           stack_dir=self.stack_dir, federation_host=params['federation_host'],
                           federation_port=params['federation_port']))

    def _plan_options(self):
        return _local(dict((name, self.params.get(name)) for name in OPTIONS))

    def _plan_env(self):
        return _local(env_facts(self.env, self.env_path, probe.lstat_info(self.env_path)))

    def _plan_containers(self):
        self._containers = {}  # inspected again (a refresh)
        return _local(dict((service, self.container(service)[1]) for service in _stack.SERVICES))

    def _plan_agent_healthcheck(self):
        return {'': (self.exec_in, ('spire-agent', list(_stack.AGENT_HEALTHCHECK)))}, lambda done: done['']

    def _plan_agent_svid(self):
        agent_dir = self.agent_dir()
        data = probe.read_file(os.path.join(agent_dir, 'agent-data.json')) if agent_dir else None
        return _local(_text(agent_svid_pem(data)) if data else None)

    def _plan_agent_log(self):
        # incident_evidence's agent_log_lines when it gathers (its evidence takes the log from here), else 200.
        return {'': (self.log_lines, ('spire-agent', None, self.params.get('agent_log_lines') or 200))}, \
            lambda done: done['']

    def _plan_cert_writer_log(self):
        # incident_evidence's log_lines when it gathers, else the guide's 50.
        return {'': (self.log_lines, ('cert-writer', None, self.params.get('log_lines') or 50))}, \
            lambda done: done['']

    def _plan_registry_log(self):
        since = self.now - datetime.timedelta(seconds=self.params['eventstore_window'])
        return {'': (self.log_lines, ('registry', since))}, lambda done: done['']

    def _plan_svid_files(self):
        return _local(self.svid_files())

    def _plan_x509pop_cert(self):
        return _local(_text(probe.read_file(os.path.join(self.stack_dir, 'spire', 'x509pop.crt'))))

    def _plan_federation_health(self):
        job = (probe.https_request, (self.params['federation_host'], self.params['federation_port'], 'GET', '/health',
                                     probe.tls_context(), self.timeout))
        return {'': job}, lambda done: probe_outcome(done[''])

    def _plan_mtls_probes(self):
        setup = self._mtls_setup()
        host, port = self.params['federation_host'], self.params['federation_port']
        jobs = {}
        for probe_id, (context, headers) in setup['probes'].items():
            for method, path in cl.FEDERATION_ENDPOINTS:
                body = b'{}' if method == 'POST' else None
                sent = dict(headers, **{'Content-Type': 'application/json'}) if body else headers
                jobs[(probe_id, method, path)] = (probe.https_request, (host, port, method, path, context, self.timeout,
                                                                        sent, body))

        def assemble(done):
            matrix = dict((probe_id, [probe_outcome(done[(probe_id, m, p)]) for m, p in cl.FEDERATION_ENDPOINTS])
                          for probe_id in setup['probes'])
            for outcomes in matrix.values():
                for outcome in outcomes:
                    del outcome['served_certificate_pem']
            return dict(matrix=matrix, unavailable=setup['unavailable'], identities=setup['identities'])
        return jobs, assemble

    def _mtls_setup(self):
        """TLS contexts and headers of the mtls_enforced probes: probe id -> (context, headers); what could
        not be made (probe id -> why) and the SPIFFE ID each certificate probe presents."""
        probes, unavailable, identities = {}, {}, {}
        no_cert = probe.tls_context()
        probes['no_cert'] = (no_cert, {})
        for probe_id, make in (('self_signed', _probe_certs.self_signed), ('foreign_ca', _probe_certs.foreign_ca)):
            try:
                probes[probe_id] = (probe.tls_context_pem(*make(self.expected_id, self.now)), {})
                identities[probe_id] = self.expected_id
            except (_probe_certs.ProbeCertError, x509u.X509Error, OSError, ValueError) as exc:
                unavailable[probe_id] = 'cannot make the certificate (%s)' % type(exc).__name__
        agent_dir = self.agent_dir()
        if agent_dir:
            try:
                chain, key, agent_id = _probe_certs.agent_svid(
                    probe.read_file(os.path.join(agent_dir, 'agent-data.json')),
                    probe.read_file(os.path.join(agent_dir, 'keys.json')))
                probes['non_registry'] = (probe.tls_context_pem(chain, key), {})
                identities['non_registry'] = agent_id
            except _probe_certs.ProbeCertError as exc:
                unavailable['non_registry'] = str(exc)
            except (OSError, ValueError) as exc:
                unavailable['non_registry'] = 'the agent SVID cannot be loaded (%s)' % type(exc).__name__
        else:
            unavailable['non_registry'] = 'the SPIRE agent data directory was not found'
        certs_dir, svid_path, key_path = self._svid_paths()
        svid_pem = probe.read_file(svid_path) if certs_dir else None
        with_cert = None
        if svid_pem and probe.read_file(key_path):
            try:
                with_cert = probe.tls_context(svid_path, key_path)
            except (OSError, ValueError):
                with_cert = None
        if with_cert is not None:
            probes['legacy_header'] = (with_cert, {cl.LEGACY_HEADER: 'checklist-probe'})
            probes['registry_svid'] = (with_cert, {})
            identities['registry_svid'] = self.expected_id
            try:
                probes['forged_header'] = (no_cert, {'X-SSL-Client-Cert': _probe_certs.escaped_header(svid_pem)})
            except (_probe_certs.ProbeCertError, UnicodeDecodeError):
                unavailable['forged_header'] = 'our registry SVID file holds no PEM certificate'
        else:
            for probe_id in ('legacy_header', 'registry_svid', 'forged_header'):
                unavailable[probe_id] = 'our registry SVID or key cannot be loaded from the certs volume'
        return dict(probes=probes, unavailable=unavailable, identities=identities)

    def _plan_live_auth(self):
        jobs = {}
        for key in cl.DB_SECRET_KEYS:
            if self.env.value(key) and self.container(cl.DB_SECRET_SERVICES[key])[1].get('running'):
                jobs[key] = (self._live_auth, (key,))
        return jobs, lambda done: done

    def _live_auth(self, key):
        """The live check of ``key`` (with its controls) through _live_auth, in the db or redis container."""
        user = self.env.value('POSTGRES_USER') or 'postgres'

        def executor(service, argv, environment):
            res = self.exec_in(service, argv, environment=environment)
            return res['exit_code'], res['output']

        return _live_auth.check(executor, _live_auth.KIND_OF_KEY[key], self.env.value(key), user,
                                self.env.value('POSTGRES_DB') or user)

    def _plan_redis_passwords(self):
        if not self.env.value('REDIS_PASSWORD'):
            return _local(dict(count=None, reason='no REDIS_PASSWORD in .env.operator'))
        if not self.container('redis')[1].get('running'):
            return _local(dict(count=None, reason='Redis is not running'))
        return {'': (self._redis_passwords, ())}, lambda done: done['']

    def _redis_passwords(self):
        """How many passwords Redis accepts for the stack user (``_rotation.Live.redis_hashes``)."""
        def executor(container, argv, environment):
            res = self.exec_in(container, argv, environment=environment)
            return (125 if res['exit_code'] is None else res['exit_code']), res['output']

        live = _rotation.Live(executor, {'redis': 'redis'}, None, None)
        try:
            return dict(count=len(live.redis_hashes(self.env.value('REDIS_PASSWORD'))), reason=None)
        except _rotation.RotationError:
            return dict(count=None, reason='REDIS_PASSWORD of .env.operator cannot read the ACL of the stack user '
                                           '(refused, or Redis down)')

    def _plan_images(self):
        jobs = dict((service, (self.image, (service,))) for service in _stack.SERVICES)
        return jobs, lambda done: dict((s, info) for s, info in done.items() if info is not None)

    def _plan_journal(self):
        try:
            doc, error = _rotation_journal.load(self.env_path), None
        except _rotation_journal.JournalError as exc:
            doc, error = None, str(exc)
        values = dict((k, self.env.value(k)) for k in cl.SECRET_KEYS if self.env.value(k))
        ages = _rotation_journal.secret_ages(doc or _rotation_journal.empty(), _rotation.fingerprints(values),
                                             now=self.now)
        return _local(dict(path=_rotation_journal.journal_path(self.env_path), error=error,
                           rotation=rotation_facts((doc or {}).get('rotation')), secret_ages=ages))


# --------------------------------------------------------------------------- the checklist over the facts

# The thresholds of the checks, for every module that runs the checklist (security_checklist, and
# incident_evidence with checklist=true); documented once in the doc fragment theprotocol.operator._checklist.
CHECKLIST_ARGUMENT_SPEC = dict(
    svid_min_remaining_seconds=dict(type='int', default=30),
    served_svid_grace=dict(type='int', default=15),
    x509pop_warn_days=dict(type='int', default=30),
    eventstore_window=dict(type='int', default=300),
    secret_max_age_days=dict(type='int', default=_rotation_journal.DEFAULT_MAX_AGE_DAYS, no_log=False),
)


def checklist_problems(params, checks=None):
    """What is wrong with the thresholds of :data:`CHECKLIST_ARGUMENT_SPEC` and the check ids ``checks``."""
    problems = []
    if params['eventstore_window'] <= 0:
        problems.append('eventstore_window must be a positive number of seconds, got %d.' % params['eventstore_window'])
    for name in ('svid_min_remaining_seconds', 'x509pop_warn_days', 'secret_max_age_days'):
        if params[name] < 0:
            problems.append('%s must be 0 or more, got %d.' % (name, params[name]))
    unknown = [c for c in checks or [] if c not in cl.CHECK_IDS]
    if unknown:
        problems.append('Unknown check(s) %s; known: %s.' % (', '.join(unknown), ', '.join(cl.CHECK_IDS)))
    return problems


def checklist(gatherer, selected=None, no_log_values=None):
    """Gather the facts of the ``selected`` checks (default all) once and judge them (``_checklist.run``).

    The env file's secret values go into ``no_log_values`` (the module's ``no_log_values``: Ansible's output
    masking) before any fact is gathered. Returns ``(result, facts)``: ``result`` as the
    security_checklist module returns it (results, summary, registry_name, checked_at), ``facts`` scrubbed
    of every secret value. Raises ObserveError."""
    selected = list(selected or cl.CHECK_IDS)
    secrets = gatherer.read_env()
    if no_log_values is not None:
        no_log_values.update(_secrets.no_log_values(secrets))
    facts = gatherer.gather(cl.facts_needed(selected))
    results = cl.scrub(cl.run(facts, selected, regather=gatherer.refresh), secrets)
    result = dict(results=results, summary=cl.summarize(results), registry_name=gatherer.params['registry_name'],
                  checked_at=gatherer.now.strftime('%Y-%m-%dT%H:%M:%SZ'))
    return result, cl.scrub(facts, secrets)
