# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime

import pytest
from cryptography.hazmat.primitives import serialization

from ansible_collections.theprotocol.operator.plugins.module_utils import _preflight as p
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


class Frame:
    """A parent frame's PKI: frame CA -> intermediate -> x509pop cert of the host, and a SPIRE CA bundle."""

    def __init__(self, pki, now):
        make_key, make_cert = pki.make_key, pki.make_cert
        self.pki = pki
        self.now = now
        self.root_key = make_key()
        self.root = make_cert(self.root_key, 'frame-root', ca=True, not_before=now - 30 * DAY,
                              not_after=now + 365 * DAY)
        self.int_key = make_key()
        self.inter = make_cert(self.int_key, 'frame-intermediate', issuer=(self.root, self.root_key), ca=True,
                               path_length=0, not_before=now - 10 * DAY, not_after=now + 200 * DAY)
        self.pop_key = make_key('rsa')
        self.pop = make_cert(self.pop_key, 'acme-host', issuer=(self.inter, self.int_key), dns=['acme-host'],
                             not_before=now - DAY, not_after=now + 90 * DAY)
        self.spire_key = make_key()
        self.spire_ca = make_cert(self.spire_key, 'spire-ca', ca=True, uris=['spiffe://example.com'],
                                  not_before=now - DAY, not_after=now + 30 * DAY)

    def pem(self, *certs):
        return self.pki.cert_pem(*certs).decode('ascii')

    def key(self, key):
        return self.pki.key_pem(key).decode('ascii')

    def leaf(self, **kwargs):
        """Another x509pop cert for pop_key, issued by the intermediate."""
        kwargs.setdefault('not_before', self.now - DAY)
        kwargs.setdefault('not_after', self.now + 90 * DAY)
        return self.pki.make_cert(self.pop_key, 'acme-host', issuer=kwargs.pop('issuer', (self.inter, self.int_key)),
                                  **kwargs)

    def inputs(self, **overrides):
        values = dict(
            operator_name='acme', registry_name='acme', trust_domain='example.com',
            registry_did='did:web:registry.acme.example', spire_server_address='spire.frame.example',
            spire_server_port=8081, x509pop_cert=self.pem(self.pop), x509pop_key=self.key(self.pop_key),
            x509pop_intermediates=self.pem(self.inter), trust_bundle=self.pem(self.spire_ca),
            settings={'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': 'true', 'OPERATOR_NAME': 'acme'},
            x509pop_min_remaining_days=0)
        values.update(overrides)
        return values


@pytest.fixture(scope='module')
def frame(pki):
    return Frame(pki, pki.now)


def run(frame, **overrides):
    return p.preflight(now=frame.now, **frame.inputs(**overrides))


def key_lines(frame):
    return [line for line in frame.key(frame.pop_key).splitlines()[1:-1] if len(line) > 16]


def assert_no_key_material(frame, text):
    assert 'PRIVATE KEY' not in text
    for line in key_lines(frame):
        assert line not in text


# ----------------------------------------------------------------------------- good input

def test_good_inputs(frame):
    result = run(frame)
    assert result['problems'] == []
    assert result['valid'] is True
    assert result['registry_spiffe_id'] == 'spiffe://example.com/service/registry-acme'
    assert result['x509pop_agent_spiffe_id'] == _x509.x509pop_agent_spiffe_id('example.com', frame.pop)
    assert result['x509pop_agent_spiffe_id'].startswith('spiffe://example.com/spire/agent/x509pop/')
    assert result['x509pop_not_after'] == _x509.isoformat(frame.now + 90 * DAY)
    assert result['x509pop_remaining_days'] == 90
    assert result['trust_bundle_ca_count'] == 1
    assert result['trust_bundle_trust_domains'] == ['example.com']


@pytest.mark.parametrize('overrides', [
    dict(x509pop_intermediates=None),
    dict(x509pop_intermediates=''),
    dict(settings={'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': True}),
    dict(x509pop_min_remaining_days=89),
    dict(registry_did='did:example:123456789abcdefghi'),
    dict(registry_did='did:web:host%3A8443:user:alice'),
    dict(registry_did='did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'),
    dict(registry_did='did:theprotocol:registry-acme_1.0'),
    dict(spire_server_address='10.0.0.5'),
    dict(spire_server_port=1),
    dict(spire_server_port=65535),
    dict(operator_name='a'),
    dict(operator_name='a' * 63, registry_name='r-1'),
])
def test_good_variants(frame, overrides):
    assert run(frame, **overrides)['problems'] == []


def test_cert_file_with_chain(frame):
    assert run(frame, x509pop_cert=frame.pem(frame.pop, frame.inter), x509pop_intermediates=None)['problems'] == []
    result = run(frame, x509pop_cert=frame.pem(frame.pop, frame.pki.other_root), x509pop_intermediates=None)
    assert len(result['problems']) == 1 and 'None of the 1 x509pop intermediate' in result['problems'][0]


def test_bundle_with_several_cas(frame):
    plain_ca = frame.pki.make_cert(frame.pki.make_key(), 'upstream', ca=True)
    result = run(frame, trust_bundle=frame.pem(frame.spire_ca, plain_ca, frame.pop))
    assert result['problems'] == []
    assert result['trust_bundle_ca_count'] == 2


# ----------------------------------------------------------------------------- each fault, alone

def _faults(frame):
    now, pki = frame.now, frame.pki
    encrypted = frame.pop_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b'vault-pass')).decode('ascii')
    damaged_cert = frame.pem(frame.pop).replace('M', 'x', 40)
    other_td_ca = pki.make_cert(pki.make_key(), 'spire-ca-other', ca=True, uris=['spiffe://other.org'])
    bad_id_ca = pki.make_cert(pki.make_key(), 'spire-ca-bad', ca=True, uris=['spiffe://Example.COM'])
    expired_ca = pki.make_cert(pki.make_key(), 'spire-ca-old', ca=True, uris=['spiffe://example.com'],
                               not_before=now - 60 * DAY, not_after=now - DAY)
    expired_inter = pki.make_cert(frame.int_key, 'frame-intermediate', issuer=(frame.root, frame.root_key), ca=True,
                                  not_before=now - 100 * DAY, not_after=now - DAY)
    future_inter = pki.make_cert(frame.int_key, 'frame-intermediate', issuer=(frame.root, frame.root_key), ca=True,
                                 not_before=now + HOUR, not_after=now + 100 * DAY)
    # Same name, another key: the signature of the x509pop certificate does not verify.
    impostor_inter = pki.make_cert(pki.make_key(), 'frame-intermediate', issuer=(frame.root, frame.root_key), ca=True)
    non_ca_inter = pki.make_cert(frame.int_key, 'frame-intermediate', issuer=(frame.root, frame.root_key), ca=False)
    return [
        # names
        (dict(operator_name='Acme'), "operator name 'Acme' is invalid"),
        (dict(operator_name='acme_1'), "operator name 'acme_1' is invalid"),
        (dict(operator_name='-acme'), 'RFC 1123'),
        (dict(operator_name='a' * 64), 'RFC 1123'),
        (dict(operator_name=''), 'operator_name is not set'),
        (dict(operator_name=None), 'operator_name is not set'),
        (dict(registry_name='acme_registry'), "registry name 'acme_registry' is invalid"),
        (dict(registry_name='Acme'), 'prefixes the container names'),
        (dict(registry_name=None), 'registry_name is not set'),
        # trust domain
        (dict(trust_domain='Example.com'), "trust domain 'Example.com' is invalid"),
        (dict(trust_domain='spiffe://example.com'), 'is invalid'),
        (dict(trust_domain=''), 'trust_domain is not set'),
        # DID
        (dict(registry_did=None), 'registry_did is not set'),
        (dict(registry_did='web:registry.example.com'), 'is not a DID'),
        (dict(registry_did='did:Web:registry.example.com'), 'is not a DID'),
        (dict(registry_did='did:web:'), 'is not a DID'),
        (dict(registry_did='did::x'), 'is not a DID'),
        (dict(registry_did='did:web:a b'), 'is not a DID'),
        (dict(registry_did='did:web:example.com/path'), 'is not a DID'),
        (dict(registry_did='did:web:example.com#key-1'), 'is not a DID'),
        (dict(registry_did='did:web:example.com:'), 'is not a DID'),
        (dict(registry_did='did:web:bad%zz'), 'is not a DID'),
        # SPIRE server
        (dict(spire_server_address=''), 'spire_server_address is not set'),
        (dict(spire_server_address='https://spire.frame.example'), 'bare host name'),
        (dict(spire_server_address='spire frame'), 'bare host name'),
        (dict(spire_server_port=0), 'is not a TCP port'),
        (dict(spire_server_port=65536), 'is not a TCP port'),
        (dict(spire_server_port=None), 'spire_server_port is not set'),
        # settings
        (dict(settings={'MINTING_AUTHORITY': 'enabled', 'EVENTSTORE_MTLS_REQUIRED': 'true'}),
         "MINTING_AUTHORITY='enabled'; it must be exactly \"disabled\""),
        (dict(settings={'MINTING_AUTHORITY': 'Disabled', 'EVENTSTORE_MTLS_REQUIRED': 'true'}),
         'must be exactly "disabled" (lowercase)'),
        (dict(settings={'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': 'True'}),
         "EVENTSTORE_MTLS_REQUIRED='True'; it must be exactly \"true\""),
        (dict(settings={'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': False}),
         "EVENTSTORE_MTLS_REQUIRED='false'"),
        (dict(settings={'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': '1'}),
         "EVENTSTORE_MTLS_REQUIRED='1'"),
        (dict(settings={'EVENTSTORE_MTLS_REQUIRED': 'true'}), 'settings lack MINTING_AUTHORITY'),
        (dict(settings={'MINTING_AUTHORITY': 'disabled'}), 'settings lack EVENTSTORE_MTLS_REQUIRED'),
        (dict(settings={'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': None}),
         'Setting EVENTSTORE_MTLS_REQUIRED has no value'),
        (dict(settings={'MINTING_AUTHORITY': 'disabled', 'EVENTSTORE_MTLS_REQUIRED': 'true', 'X': 'a\nb'}),
         'Setting X contains a line break'),
        # x509pop certificate
        (dict(x509pop_cert=None), 'x509pop_cert is not set'),
        (dict(x509pop_cert='/etc/theprotocol/x509pop.pem'), 'x509pop_cert looks like a file path'),
        (dict(x509pop_cert='hello'), 'x509pop_cert holds no PEM certificate'),
        (dict(x509pop_cert=damaged_cert), 'cannot be parsed'),
        (dict(x509pop_cert=frame.pem(frame.leaf(key_usage='no_sign'))), 'no digitalSignature key usage'),
        (dict(x509pop_cert=frame.pem(frame.leaf(key_usage=None))), 'no digitalSignature key usage'),
        (dict(x509pop_cert=frame.pem(frame.inter), x509pop_key=frame.key(frame.int_key),
              x509pop_intermediates=frame.pem(frame.root)), 'is a CA certificate'),
        (dict(x509pop_cert=frame.pem(frame.leaf(not_before=now - 10 * DAY, not_after=now - HOUR))),
         'expired at %s' % _x509.isoformat(now - HOUR)),
        (dict(x509pop_cert=frame.pem(frame.leaf(not_before=now + HOUR, not_after=now + 10 * DAY))),
         'is not valid before %s' % _x509.isoformat(now + HOUR)),
        (dict(x509pop_min_remaining_days=91), 'in less than the required 91 day(s)'),
        # x509pop key
        (dict(x509pop_key=None), 'x509pop_key is not set'),
        (dict(x509pop_key=frame.key(frame.pki.mismatched_key)), 'x509pop_key does not belong'),
        (dict(x509pop_key=encrypted), 'encrypted private key'),
        (dict(x509pop_key='~/keys/x509pop.key'), 'x509pop_key looks like a file path'),
        (dict(x509pop_key=frame.pem(frame.pop)), 'x509pop_key holds no PEM private key'),
        (dict(x509pop_key='-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'),
         'x509pop_key cannot be parsed'),
        # intermediates
        (dict(x509pop_intermediates=frame.pem(frame.pki.other_root)), 'None of the 1 x509pop intermediate'),
        (dict(x509pop_intermediates=frame.pem(expired_inter)),
         'The x509pop intermediate "CN=frame-intermediate,O=SPIRE,C=US" expired at %s' % _x509.isoformat(now - DAY)),
        (dict(x509pop_intermediates=frame.pem(future_inter)),
         'intermediate "CN=frame-intermediate,O=SPIRE,C=US" is not valid before'),
        (dict(x509pop_intermediates=frame.pem(non_ca_inter)), 'is not a CA certificate'),
        (dict(x509pop_intermediates=frame.pem(impostor_inter)), 'has the name of the issuer'),
        (dict(x509pop_intermediates='garbage'), 'x509pop_intermediates holds no PEM certificate'),
        # bundle
        (dict(trust_bundle=None), 'trust_bundle is not set'),
        (dict(trust_bundle='/etc/spire/bundle.pem'), 'trust_bundle looks like a file path'),
        (dict(trust_bundle=frame.key(frame.spire_key)), 'trust_bundle holds no PEM certificate'),
        (dict(trust_bundle=frame.pem(frame.pop)), 'no CA certificate'),
        (dict(trust_bundle=frame.pem(expired_ca)), 'Every CA certificate in trust_bundle has expired'),
        (dict(trust_bundle=frame.pem(other_td_ca)),
         'Trust domain mismatch: the CA "CN=spire-ca-other,O=SPIRE,C=US" in trust_bundle belongs to trust domain '
         'other.org, but trust_domain is example.com'),
        (dict(trust_bundle=frame.pem(frame.spire_ca, other_td_ca)), 'Trust domain mismatch'),
        (dict(trust_bundle=frame.pem(bad_id_ca)), 'carries an invalid SPIFFE ID'),
        (dict(trust_domain='other.org'), 'belongs to trust domain example.com, but trust_domain is other.org'),
    ]


def test_each_fault_alone(frame):
    for overrides, expected in _faults(frame):
        result = run(frame, **overrides)
        assert len(result['problems']) == 1, (overrides.keys(), result['problems'])
        assert expected in result['problems'][0], (expected, result['problems'])
        assert result['valid'] is False
        assert_no_key_material(frame, ' '.join(result['problems']))


def test_facts_with_faults(frame):
    expired = frame.leaf(not_before=frame.now - 10 * DAY, not_after=frame.now - HOUR)
    result = run(frame, x509pop_cert=frame.pem(expired))
    assert result['x509pop_remaining_days'] == -1
    assert result['x509pop_not_after'] == _x509.isoformat(frame.now - HOUR)
    result = run(frame, trust_domain='Bad', operator_name='Bad')
    assert result['registry_spiffe_id'] is None and result['x509pop_agent_spiffe_id'] is None
    result = run(frame, x509pop_cert='junk', trust_bundle='junk')
    assert result['x509pop_not_after'] is None and result['x509pop_remaining_days'] is None
    assert result['trust_bundle_ca_count'] is None


def test_all_problems_in_one_go(frame):
    result = run(frame, operator_name='Acme!', registry_name='', trust_domain='example.com',
                 registry_did='not-a-did', spire_server_address='', spire_server_port=70000,
                 settings={'MINTING_AUTHORITY': 'enabled', 'EVENTSTORE_MTLS_REQUIRED': 'false'},
                 x509pop_key=frame.key(frame.pki.mismatched_key),
                 x509pop_cert=frame.pem(frame.leaf(key_usage='no_sign', not_after=frame.now - HOUR,
                                                   not_before=frame.now - DAY)),
                 trust_bundle=frame.pem(frame.pki.make_cert(frame.pki.make_key(), 'x', ca=True,
                                                            uris=['spiffe://other.org'])))
    problems = result['problems']
    assert len(problems) == 11, problems
    message = p.format_problems(problems)
    assert message.startswith('Preflight found 11 problem(s) in the operator stack inputs; nothing was changed:\n1. ')
    assert '\n11. ' in message
    for needle in ('operator name', 'registry_name is not set', 'is not a DID', 'spire_server_address is not set',
                   'is not a TCP port', 'MINTING_AUTHORITY', 'EVENTSTORE_MTLS_REQUIRED', 'does not belong',
                   'digitalSignature', 'expired at', 'Trust domain mismatch'):
        assert needle in message, needle
    assert_no_key_material(frame, message)


def test_bad_call(frame):
    with pytest.raises(p.PreflightError, match='0 or more'):
        p.preflight(x509pop_min_remaining_days=-1)


def test_defaults_without_anything():
    result = p.preflight()
    text = ' | '.join(result['problems'])
    for needle in ('operator_name is not set', 'registry_name is not set', 'registry_did is not set',
                   'spire_server_address is not set', 'settings lack MINTING_AUTHORITY',
                   'settings lack EVENTSTORE_MTLS_REQUIRED', 'x509pop_cert is not set', 'x509pop_key is not set',
                   'trust_bundle is not set'):
        assert needle in text
    assert len(result['problems']) == 9


@pytest.mark.parametrize('did, ok', [
    ('did:web:example.com', True),
    ('did:example:123', True),
    ('did:a:b', True),
    ('did:web:a:b:c', True),
    ('did:web::b', True),
    ('did:web:%41', True),
    ('DID:web:x', False),
    ('did:web-x:y', False),
    ('did:web:x?service=a', False),
    ('did:web:%4', False),
    ('did:web', False),
])
def test_did_syntax(did, ok):
    assert bool(p.DID_RE.match(did)) is ok


# ----------------------------------------------------------------------------- onboarding.yml (issue 16)
# fixtures/onboarding_operator3.yml and its x509pop certificate are what the lab frame's
# operator_onboarding role wrote for operator3 (registry3, trust domain example.com).

import os  # noqa: E402

import yaml  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'fixtures', 'onboarding_operator3.yml'), encoding='utf-8') as _f:
    ONBOARDING = yaml.safe_load(_f)
with open(os.path.join(HERE, 'fixtures', 'onboarding_operator3_x509pop.crt'), 'rb') as _f:
    ONBOARDING_CERT_SHA1 = _x509.sha1_fingerprint(_x509.load_pem_chain(_f.read())[0])


def onboarding_problems(operator_name='operator3', registry_name='registry3', trust_domain='example.com',
                        onboarding=ONBOARDING, sha1=ONBOARDING_CERT_SHA1):
    problems = []
    reg = p.check_onboarding(onboarding, operator_name, registry_name, trust_domain, problems, sha1)
    return problems, reg


def test_onboarding_registration_read_from_the_frames_file():
    assert p.registration(ONBOARDING) == dict(
        operator_name='operator3', registry_name='registry3', trust_domain='example.com',
        registry_spiffe_id='spiffe://example.com/service/registry-operator3',
        x509pop_sha1_fingerprint='3ab280573a38ce2d8fcaadf200127b1c2c9523cb',
        workload_selectors=None, compose_project=None)  # written before onboarding.yml recorded the selectors


def test_onboarding_matching_inputs_pass():
    problems, reg = onboarding_problems()
    assert problems == []
    assert reg['registry_name'] == 'registry3'
    # the certificate of the fixture is the one the file records
    assert ONBOARDING_CERT_SHA1 == reg['x509pop_sha1_fingerprint']


def test_onboarding_registry_name_mismatch_says_what_the_frame_registered():
    problems, dummy = onboarding_problems(registry_name='acme-registry')
    assert len(problems) == 1, problems
    msg = problems[0]
    assert "for the compose project 'registry3'" in msg
    assert 'docker:label:com.docker.compose.project:registry3' in msg
    assert "registry_name is 'acme-registry'" in msg
    assert "cert-writer would get no SVID" in msg
    assert "theprotocol_registry_name in the inventory" in msg and "to 'registry3'" in msg
    assert "onboard operator 'operator3' again with registry name 'acme-registry'" in msg


def test_onboarding_operator_name_mismatch():
    problems, dummy = onboarding_problems(operator_name='operator4')
    assert len(problems) == 1, problems
    assert "issued to operator 'operator3'" in problems[0]
    assert 'spiffe://example.com/service/registry-operator3' in problems[0]
    assert "operator_name is 'operator4'" in problems[0] and 'theprotocol_operator_name' in problems[0]
    assert '<onboarding_dir>/operator4/' in problems[0]


def test_onboarding_trust_domain_mismatch():
    problems, dummy = onboarding_problems(trust_domain='other.example.org')
    assert len(problems) == 1, problems
    assert "trust domain 'example.com'" in problems[0] and "trust_domain is 'other.example.org'" in problems[0]
    assert 'theprotocol_trust_domain' in problems[0]


def test_onboarding_every_mismatch_listed():
    problems, dummy = onboarding_problems(operator_name='acme', registry_name='acme', trust_domain='acme.example')
    assert len(problems) == 3, problems


def test_onboarding_spiffe_id_registered_elsewhere():
    custom = dict(ONBOARDING, registry_spiffe_id='spiffe://example.com/workload/registry3')
    problems, dummy = onboarding_problems(onboarding=custom)
    assert len(problems) == 1, problems
    assert 'spiffe://example.com/workload/registry3' in problems[0]
    assert 'spiffe://example.com/service/registry-operator3' in problems[0]


def test_onboarding_certificate_of_another_issue():
    problems, dummy = onboarding_problems(sha1='0' * 40)
    assert len(problems) == 1, problems
    assert 'not the one the parent frame issued with this onboarding.yml' in problems[0]
    assert '3ab280573a38ce2d8fcaadf200127b1c2c9523cb' in problems[0]
    assert onboarding_problems(sha1=None)[0] == []  # certificate unparsable: reported by check_x509pop


SELECTORS = ['docker:label:com.docker.compose.project:registry3', 'docker:label:com.docker.compose.service:cert-writer']


def test_onboarding_selectors_recorded_and_matching():
    problems, reg = onboarding_problems(onboarding=dict(ONBOARDING, registry_workload_selectors=SELECTORS))
    assert problems == []
    assert reg['workload_selectors'] == SELECTORS and reg['compose_project'] == 'registry3'


def test_onboarding_selectors_of_another_compose_project():
    # The frame kept registry_name but gave the workload entry selectors of its own.
    selectors = ['docker:label:com.docker.compose.project:legacy', 'docker:label:com.docker.compose.service:cert-writer']
    problems, dummy = onboarding_problems(onboarding=dict(ONBOARDING, registry_workload_selectors=selectors))
    assert len(problems) == 1, problems
    assert "selects the compose project 'legacy'" in problems[0] and "not 'registry3'" in problems[0]
    assert 'cert-writer would get no SVID' in problems[0] and "registry_name 'legacy'" in problems[0]
    # Selectors without a compose project (e.g. unix:uid:0): the frame's choice, nothing to compare.
    assert onboarding_problems(onboarding=dict(ONBOARDING, registry_workload_selectors=['unix:uid:0']))[0] == []


@pytest.mark.parametrize('onboarding', [None, {}])
def test_onboarding_absent_is_not_checked(onboarding):
    assert onboarding_problems(registry_name='anything', onboarding=onboarding) == ([], None)


def test_onboarding_not_the_frames_file():
    problems, dummy = onboarding_problems(onboarding='registry_name: registry3')
    assert len(problems) == 1 and 'not a str' in problems[0]
    problems, dummy = onboarding_problems(onboarding={'agent': {'trust_domain': 'example.com'}})
    assert len(problems) == 1 and 'names no operator_name and no registry_name' in problems[0]


def test_preflight_compares_onboarding_and_can_skip_the_material(frame):
    onboarding = dict(ONBOARDING, operator_name='acme', registry_name='acme-registry',
                      registry_spiffe_id='spiffe://example.com/service/registry-acme',
                      x509pop_certificate_sha1_fingerprint=_x509.sha1_fingerprint(frame.pop))
    result = run(frame, onboarding=onboarding)
    assert len(result['problems']) == 1 and "compose project 'acme-registry'" in result['problems'][0]
    assert result['onboarding_registration']['registry_name'] == 'acme-registry'
    assert result['x509pop_sha1_fingerprint'] == _x509.sha1_fingerprint(frame.pop)
    assert run(frame, onboarding=onboarding, registry_name='acme-registry')['problems'] == []
    # Before the frame issues the material (same run): no material checks, and none of its problems.
    result = run(frame, onboarding=onboarding, x509pop_cert='', trust_bundle='', check_onboarding_material=False)
    assert result['problems'] == [] and result['onboarding_registration'] is None
