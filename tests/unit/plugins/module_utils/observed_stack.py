# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A registry host's stack for the tests of the observation layer and of the checklist's runner.

On disk, in a temporary directory laid out like the host (``/opt/theprotocol/<registry>``, Docker's
volumes under ``/var/lib/docker/volumes``): the env file written by ``_envfile`` with generated
secrets, the rotation journal written by ``_rotation_journal``, the x509pop certificate, the certs
volume as cert-writer writes it (``..data`` switch) and the SPIRE agent's data directory, all with
the certificates of ``tests/unit/conftest.py``'s PKI.

Docker: a stand-in of the Docker SDK's client (the SDK is not ours) serving ``docker inspect``-shaped
data, ``docker logs --timestamps`` output in the formats of the lab images
(``lab/images/cert-writer/main.go``, ``lab/images/registry/app/registry_app.py``, SPIRE's agent as
captured on the lab) and the outputs of the commands run in containers, as captured on the lab
(``fixtures/live_auth_outputs.json``, redis-cli 7.0 ``--json``).

The network has no stand-in: :func:`health_probe` and :func:`mtls_probes` give those two facts as
the outcomes of ``_checklist_probe.https_request`` (the answers of the role's nginx-federation
configuration and the lab registry).
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import os
import types

import docker.errors
from cryptography.hazmat.primitives import serialization

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _observe as observe
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509
from ansible_collections.theprotocol.operator.plugins.module_utils._docker_time import parse_timestamp

HERE = os.path.dirname(os.path.abspath(__file__))
LIVE_AUTH = json.load(open(os.path.join(HERE, 'fixtures', 'live_auth_outputs.json')))

REGISTRY, OPERATOR, TRUST_DOMAIN = 'registry1', 'acme', 'example.com'
SEC = datetime.timedelta(seconds=1)
DAY = datetime.timedelta(days=1)
# The lab's settings (inventory): cert-writer every 15 s; the checklist tests' EventStore window.
INTERVAL, WINDOW = 15, 40
OPTIONS = dict(cert_writer_interval=INTERVAL, svid_min_remaining_seconds=30, served_svid_grace=15, x509pop_warn_days=30,
               eventstore_window=WINDOW, secret_max_age_days=90)
PUBLIC_SETTINGS = (
    ('OPERATOR_NAME', OPERATOR), ('REGISTRY_NAME', REGISTRY), ('REGISTRY_DID', 'did:web:registry1.acme.example.com'),
    ('TRUST_DOMAIN', TRUST_DOMAIN), ('POSTGRES_USER', 'registry'), ('POSTGRES_DB', 'registry'),
    ('EVENTSTORE_URL', 'https://eventstore.example.com:8444'), ('EVENT_INTERVAL', '5'),
    ('CERT_WRITER_INTERVAL', str(INTERVAL)), ('FEDERATION_PORT', '8443'), ('MINTING_AUTHORITY', 'disabled'),
    ('EVENTSTORE_MTLS_REQUIRED', 'true'),
)
NGINX_REFUSAL = 'mTLS client certificate from the federation trust domain required'
REFUSALS = dict(no_cert=NGINX_REFUSAL, self_signed=NGINX_REFUSAL, foreign_ca=NGINX_REFUSAL,
                non_registry='federation peer not allowed', forged_header=NGINX_REFUSAL,
                legacy_header='X-Federation-License is deactivated; use mTLS (EVENTSTORE_MTLS_REQUIRED=true)')


def docker_ts(when):
    """``docker logs --timestamps``' prefix (nanoseconds)."""
    return when.strftime('%Y-%m-%dT%H:%M:%S.') + '%06d000Z' % when.microsecond


def rfc3339(when):
    return when.strftime('%Y-%m-%dT%H:%M:%SZ')


def params(stack_dir, **changes):
    out = dict((k, v.get('default')) for k, v in _stack.argument_spec().items())
    out.update(OPTIONS, registry_name=REGISTRY, operator_name=OPERATOR, trust_domain=TRUST_DOMAIN,
               stack_dir=stack_dir, timeout=2)
    out.update(changes)
    return out


# --------------------------------------------------------------------------- the Docker SDK stand-in

class Container:
    """``docker.models.containers.Container``: attrs, logs(), exec_run()."""

    def __init__(self, host, service):
        self.host, self.service = host, service
        self.name = _stack.container_name(REGISTRY, service)

    @property
    def attrs(self):
        return self.host.inspect[self.service]

    def logs(self, stdout=True, stderr=True, timestamps=True, since=None, tail=None):
        self.host.calls.append(('logs', self.service))
        lines = list(self.host.logs.get(self.service, []))
        if since is not None:
            lines = [line for line in lines if parse_timestamp(line.split(' ', 1)[0]).timestamp() >= since]
        if tail is not None:
            lines = lines[-tail:]
        return ''.join(line + '\n' for line in lines).encode()

    def exec_run(self, argv, environment=None, stdout=True, stderr=True):
        self.host.calls.append(('exec', self.service))
        rc, text = self.host.exec_output(self.service, argv, environment or {})
        return types.SimpleNamespace(exit_code=rc, output=text.encode())


class Client:
    """``docker.DockerClient``: containers.get, volumes.get, images.get, images.get_registry_data."""

    def __init__(self, host):
        self.host = host
        self.containers = types.SimpleNamespace(get=self._container)
        self.volumes = types.SimpleNamespace(get=self._volume)
        self.images = types.SimpleNamespace(get=self._image, get_registry_data=self._registry_data)

    def _container(self, name):
        for service in self.host.inspect:
            if _stack.container_name(REGISTRY, service) == name:
                return Container(self.host, service)
        raise docker.errors.NotFound('No such container: %s' % name)

    def _volume(self, name):
        return types.SimpleNamespace(attrs={'Name': name, 'Mountpoint': self.host.volume(name.split('_', 1)[1])})

    def _image(self, image_id):
        for service, attrs in self.host.inspect.items():
            if attrs['Image'] == image_id:
                ref = attrs['Config']['Image']
                return types.SimpleNamespace(attrs={'Id': image_id, 'RepoDigests': [
                    '%s@%s' % (ref.rsplit(':', 1)[0], self.host.running_digest(service))]})
        raise docker.errors.ImageNotFound('No such image: %s' % image_id)

    def _registry_data(self, ref):
        self.host.calls.append(('registry', ref))
        service = [s for s, attrs in self.host.inspect.items() if attrs['Config']['Image'] == ref][0]
        return types.SimpleNamespace(id=self.host.registry_digests.get(service, self.host.running_digest(service)))

    def close(self):
        pass

    def ping(self):
        return True


# --------------------------------------------------------------------------- the host

class LabHost:
    """The stack of ``REGISTRY`` on a host rooted at ``root``, healthy at ``pki.now`` (change it, then gather)."""

    def __init__(self, root, pki):
        self.root, self.pki, self.now = str(root), pki, pki.now
        self.stack_dir = self.path('/opt/theprotocol', REGISTRY)
        self.env_path = os.path.join(self.stack_dir, '.env.operator')
        self.calls = []
        self.registry_digests = {}
        self.redis_passwords = 1
        os.makedirs(os.path.join(self.stack_dir, 'spire'))
        # Secrets generated (never stored in a fixture), the env file and the journal as the roles write them.
        self.secrets = dict((key, _secrets.generate_secret()) for key in _credentials.KEYS)
        self.write_env(dict(PUBLIC_SETTINGS, **self.secrets))
        doc = _rotation_journal.record_secrets(_rotation_journal.empty(), _rotation.fingerprints(self.secrets),
                                               now=self.now - 10 * DAY)
        _rotation_journal.write(self.env_path, doc)
        # The x509pop certificate, the agent's SVID (its ID follows from that certificate) and the registry's.
        self.x509pop = pki.make_cert(pki.make_key(), 'registry1.acme.example.com', issuer=(pki.root, pki.root_key),
                                     not_before=self.now - 30 * DAY, not_after=self.now + 335 * DAY)
        self.write(os.path.join(self.stack_dir, 'spire', 'x509pop.crt'), pki.cert_pem(self.x509pop))
        self.agent_id = _x509.x509pop_agent_spiffe_id(TRUST_DOMAIN, self.x509pop)
        self.agent_key = pki.make_key()
        self.agent_svid = pki.make_cert(self.agent_key, None, issuer=(pki.intermediate, pki.int_key),
                                        uris=[self.agent_id], not_before=self.now - 2 * 3600 * SEC,
                                        not_after=self.now + 2 * 3600 * SEC)
        self.write_agent_data()
        self.write_certs(pki.leaf, pki.leaf_key, written=self.now - 15 * SEC)
        self.served = pki.leaf
        self.inspect = dict((service, self.container_attrs(service)) for service in _stack.SERVICES)
        self.logs = self.healthy_logs()

    # ----------------------------------------------------------------- files

    def path(self, *parts):
        return os.path.join(self.root, *[p.lstrip('/') for p in parts])

    def volume(self, name):
        return self.path('/var/lib/docker/volumes', '%s_%s' % (REGISTRY, name), '_data')

    @staticmethod
    def write(path, data, mode=0o644):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as handle:
            handle.write(data)
        os.chmod(path, mode)

    def write_env(self, values, mode=0o600):
        env = _envfile.EnvFile()
        for key, value in values.items():
            env.set(key, value)
        _envfile.atomic_write(self.env_path, env.render().encode(), mode=mode)

    def set_env(self, key, value, mode=0o600):
        env = _envfile.EnvFile.from_bytes(_envfile.read(self.env_path)[0])
        env.set(key, value)
        _envfile.atomic_write(self.env_path, env.render().encode(), mode=mode)

    def write_certs(self, leaf, key, written, chain=None, bundle=None):
        """A set as cert-writer writes it: a ``..<stamp>`` directory, the ``..data`` switch, file links."""
        pki = self.pki
        certs = self.volume('certs')
        data = os.path.join(certs, '..' + written.strftime('%Y_%m_%d_%H_%M_%S'))
        self.write(os.path.join(data, 'svid.pem'), pki.cert_pem(leaf, *(chain or (pki.intermediate,))))
        self.write(os.path.join(data, 'svid_key.pem'), pki.key_pem(key), 0o640)
        self.write(os.path.join(data, 'bundle.pem'), bundle or pki.cert_pem(pki.root))
        link = os.path.join(certs, '..data')
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.basename(data), link)
        for name in ('svid.pem', 'svid_key.pem', 'bundle.pem'):
            if not os.path.lexists(os.path.join(certs, name)):
                os.symlink(os.path.join('..data', name), os.path.join(certs, name))
        stamp = written.timestamp()
        os.utime(link, (stamp, stamp), follow_symlinks=False)

    def write_agent_data(self):
        agent = self.volume('spire-agent-data')
        chain = self.pki.cert_pem(self.agent_svid, self.pki.intermediate)
        self.write(os.path.join(agent, 'agent-data.json'), json.dumps(
            {'svid': [base64.b64encode(chain).decode()], 'reattestable': True}).encode(), 0o600)
        der = self.agent_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        self.write(os.path.join(agent, 'keys.json'), json.dumps(
            {'keys': {'agent-svid-A': base64.b64encode(der).decode()}}).encode(), 0o600)

    # ----------------------------------------------------------------- docker inspect

    @staticmethod
    def image_ref(service):
        """The lab's images (inventory ``theprotocol_images``), pulled from its image registry."""
        return 'localhost:5000/theprotocol/%s:lab' % {'db': 'postgres'}.get(service, service)

    def running_digest(self, service):
        return 'sha256:' + hashlib.sha256(self.image_ref(service).encode()).hexdigest()

    def container_attrs(self, service):
        """``docker inspect`` of a running container of the stack (the compose file's shape)."""
        started = self.now - 2 * 3600 * SEC + 123456 * datetime.timedelta(microseconds=1)
        env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']
        mounts = []
        if service == 'registry':
            env += ['MINTING_AUTHORITY=disabled', 'EVENTSTORE_MTLS_REQUIRED=true',
                    'POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password',
                    'INTERNAL_API_KEY_FILE=/run/secrets/internal_api_key']
        if service in ('cert-writer', 'nginx-federation'):
            mounts.append({'Type': 'volume', 'Name': '%s_certs' % REGISTRY, 'Source': self.volume('certs'),
                           'Destination': '/certs', 'Driver': 'local', 'Mode': 'z', 'RW': service == 'cert-writer',
                           'Propagation': ''})
        if service == 'spire-agent':
            mounts.append({'Type': 'volume', 'Name': '%s_spire-agent-data' % REGISTRY,
                           'Source': self.volume('spire-agent-data'), 'Destination': '/opt/spire/data/agent',
                           'Driver': 'local', 'Mode': 'z', 'RW': True, 'Propagation': ''})
        state = {'Status': 'running', 'Running': True, 'Paused': False, 'Restarting': False, 'OOMKilled': False,
                 'Dead': False, 'Pid': 4242, 'ExitCode': 0, 'Error': '', 'StartedAt': docker_ts(started),
                 'FinishedAt': '0001-01-01T00:00:00Z'}
        if service in ('cert-writer', 'registry', 'db', 'redis'):
            state['Health'] = {'Status': 'healthy', 'FailingStreak': 0, 'Log': []}
        return {'Id': hashlib.sha256(service.encode()).hexdigest(), 'Name': '/%s-%s' % (REGISTRY, service),
                'RestartCount': 0, 'Image': 'sha256:' + hashlib.sha256(service.encode()).hexdigest(),
                'State': state, 'Config': {'Image': self.image_ref(service), 'Env': env}, 'Mounts': mounts}

    def stop(self, service, at):
        """The container exited at ``at`` (``docker stop``)."""
        state = self.inspect[service]['State']
        state.update(Status='exited', Running=False, Pid=0, ExitCode=0, FinishedAt=docker_ts(at))
        if 'Health' in state:
            state['Health']['Status'] = 'unhealthy'

    # ----------------------------------------------------------------- docker logs

    def cert_writer_line(self, when, leaf=None, failed=None):
        if failed:
            text = 'fetch failed: %s' % failed
        else:
            leaf = leaf or self.pki.leaf
            text = 'fetched SVID spiffe_id=%s serial=%s not_after=%s bundle_cas=1 dir=/certs' % (
                self.pki.registry_id, format(leaf.serial_number, 'x'), rfc3339(_x509.not_valid_after(leaf)))
        return '%s %s cert-writer: %s' % (docker_ts(when), rfc3339(when), text)

    def registry_line(self, when, text):
        return '%s %s.%03dZ %s' % (docker_ts(when), when.strftime('%Y-%m-%dT%H:%M:%S'), when.microsecond // 1000, text)

    def healthy_logs(self):
        now, started = self.now, self.now - 2 * 3600 * SEC
        agent = [
            '%s time="%s" level=info msg="SVID is not found. Starting node attestation" subsystem_name=attestor '
            'trust_domain_id="spiffe://example.com"' % (docker_ts(started + SEC), rfc3339(started + SEC)),
            '%s time="%s" level=info msg="Node attestation was successful" reattestable=true spiffe_id="%s" '
            'subsystem_name=attestor trust_domain_id="spiffe://example.com"' % (
                docker_ts(started + 2 * SEC), rfc3339(started + 2 * SEC), self.agent_id),
            '%s time="%s" level=info msg="Starting Workload and SDS APIs" address=/tmp/spire-agent/public/api.sock '
            'network=unix subsystem_name=endpoints' % (docker_ts(started + 2 * SEC), rfc3339(started + 2 * SEC)),
            '%s time="%s" level=info msg="Renewing X509-SVID" entry_id=bbc38164-02ae-4b7a-9cd3-284abb6c661d '
            'expires_at="%s" spiffe_id="%s" subsystem_name=manager' % (
                docker_ts(now - 60 * SEC), rfc3339(now - 60 * SEC), rfc3339(_x509.not_valid_after(self.pki.leaf)),
                self.pki.registry_id),
        ]
        cert_writer = [self.cert_writer_line(now - (15 * n + 15) * SEC + 100000 * datetime.timedelta(microseconds=1))
                       for n in reversed(range(6))]
        registry = []
        for n in reversed(range(12)):
            when = now - (5 * n + 3) * SEC + 509000 * datetime.timedelta(microseconds=1)
            registry.append(self.registry_line(when, 'eventstore write event=TokensTransferred status=201'))
        registry.insert(-2, self.registry_line(now - 9 * SEC, '172.26.0.5 "GET /health" 200'))
        nginx = ['%s /docker-entrypoint.sh: Launching /docker-entrypoint.d/40-theprotocol-reload-on-cert-change.sh'
                 % docker_ts(started + SEC),
                 '%s theprotocol-reload-on-cert-change: watching /certs every 2s' % docker_ts(started + SEC)]
        return {'spire-agent': agent, 'cert-writer': cert_writer, 'registry': registry, 'nginx-federation': nginx,
                'db': ['%s 2026-06-04 10:00:03.120 UTC [1] LOG:  database system is ready to accept connections'
                       % docker_ts(started + 3 * SEC)],
                'redis': ['%s 1:M 04 Jun 2026 10:00:02.004 * Ready to accept connections tcp' % docker_ts(started + 2 * SEC)]}

    # ----------------------------------------------------------------- docker exec

    def exec_output(self, service, argv, environment):
        state = self.inspect[service]['State']
        if not state['Running']:
            return 126, 'container %s is not running' % service
        if tuple(argv) == _stack.AGENT_HEALTHCHECK:
            return 0, 'Agent is healthy.\n'
        if 'PROBE_LABELS' in environment:  # _live_auth's probe, answered as on the lab
            return 0, self.live_auth[service]
        if 'ROTATION_INPUT' in environment:  # _rotation.Live: redis-cli --json ACL GETUSER default
            hashes = [hashlib.sha256(self.secrets['REDIS_PASSWORD'].encode()).hexdigest()]
            hashes += [hashlib.sha256(b'an older password %d' % n).hexdigest() for n in range(1, self.redis_passwords)]
            return 0, ('{"flags":["on"],"passwords":%s,"commands":"+@all","keys":"~*","channels":"&*",'
                       '"selectors":[]}\n' % json.dumps(hashes).replace(' ', ''))
        return 127, 'unexpected command'

    live_auth = {'db': LIVE_AUTH['postgres_ok'], 'redis': LIVE_AUTH['redis_ok']}

    # ----------------------------------------------------------------- gathering

    def client(self):
        return Client(self)

    def gatherer(self, **changes):
        return observe.Gatherer(self.client(), params(self.stack_dir, **changes), now=self.now)

    def facts(self, health=None, mtls=None):
        """The facts of every check: gathered from this host by ``_observe``, the two network facts given
        (:func:`health_probe`, :func:`mtls_probes`; default: a healthy nginx serving ``self.served``)."""
        network = ('federation_health', 'mtls_probes')
        facts = self.gatherer().gather([n for n in observe.FACT_NAMES if n not in network])
        facts['federation_health'] = health or health_probe(200, self.served)
        facts['mtls_probes'] = mtls or mtls_probes(self)
        return facts

    def recorded(self, facts):
        """``facts`` as recorded on the host: paths without the temporary root, the env file owned by root."""
        facts = copy.deepcopy(facts)
        if 'env' in facts:
            facts['env']['stat'].update(uid=0, gid=0)
        return json.loads(json.dumps(facts).replace(json.dumps(self.root)[1:-1], ''))


# --------------------------------------------------------------------------- the network facts

def https_outcome(method, path, status=None, error=None, tls_refused=False, served=None, reason=None):
    """An outcome of ``_checklist_probe.https_request`` as a fact (``_observe.probe_outcome``)."""
    return observe.probe_outcome(dict(method=method, path=path, status=status, error=error, tls_refused=tls_refused,
                                      peer_der=_x509.der(served) if served is not None else None, reason=reason))


def health_probe(status, served=None, error=None):
    """The fact ``federation_health``: GET /health answered ``status`` with ``served`` as server certificate."""
    return https_outcome('GET', '/health', status, error, served=served)


def mtls_probes(host, answer=None, unavailable=None):
    """The fact ``mtls_probes``: the role's nginx-federation in front of the lab registry refuses every probe
    with 403 and accepts the registry's SVID. ``answer(probe_id, method, path)`` -> outcome overrides it."""
    identities = dict(self_signed=host.pki.registry_id, foreign_ca=host.pki.registry_id,
                      non_registry=host.agent_id, registry_svid=host.pki.registry_id)
    matrix = {}
    for probe_id in cl.MTLS_PROBE_IDS:
        outcomes = []
        for method, path in cl.FEDERATION_ENDPOINTS:
            out = answer(probe_id, method, path) if answer else None
            if out is None:
                out = (https_outcome(method, path, 200) if probe_id == 'registry_svid' else
                       https_outcome(method, path, 403, reason=REFUSALS[probe_id]))
            del out['served_certificate_pem']
            outcomes.append(out)
        matrix[probe_id] = outcomes
    return dict(matrix=matrix, unavailable=dict(unavailable or {}), identities=identities)
