# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile inputs (issue 12): newline-suffixed names, HCL and YAML metacharacters, bad image
references, URLs with tokens. Each one alone is refused by the preflight with exactly one
problem that names the input; the good inputs pass. The values reach agent.conf (HCL), the
compose file (YAML) and .env.operator, so a full-string match is the only acceptable one."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _preflight as p
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

from ansible_collections.theprotocol.operator.tests.unit.plugins.module_utils.test_preflight import Frame

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

IMAGES = {
    'spire_agent': 'lab-image-registry:5000/theprotocol/spire-agent:lab',
    'cert_writer': 'images.acme.example/cert-writer:1.0',
    'nginx': 'nginx',
    'registry': 'images.acme.example/theprotocol-registry:2.4@sha256:' + 'a' * 64,
    'postgres': 'postgres:15',
    'redis': '[2001:db8::1]:5000/library/redis:7.2-bookworm',
}


@pytest.fixture(scope='module')
def frame(pki):
    return Frame(pki, pki.now)


def run(frame, **overrides):
    inputs = frame.inputs(images=dict(IMAGES), federation_bind_address='0.0.0.0',
                          extra_hosts=['eventstore.example.com:192.0.2.10'])
    for key, value in overrides.items():
        if key.startswith('images.'):
            inputs['images'][key.split('.', 1)[1]] = value
        elif key.startswith('settings.'):
            inputs['settings'] = dict(inputs['settings'], **{key.split('.', 1)[1]: value})
        else:
            inputs[key] = value
    return p.preflight(now=frame.now, **inputs)


def test_good_inputs_with_images_bind_address_and_extra_hosts(frame):
    assert run(frame)['problems'] == []
    assert run(frame, federation_bind_address='::', extra_hosts=['es:2001:db8::5'],
               spire_server_address='2001:db8::10',
               **{'settings.EVENTSTORE_URL': 'https://[2001:db8::7]:8443/api/v1/events/'})['problems'] == []
    assert run(frame, spire_server_address='172.31.250.10',
               **{'settings.EVENTSTORE_URL': 'https://lab-eventstore:8443/api/v1/events/'})['problems'] == []


# (option, hostile value, what the message names instead of the raw value or None for repr(value))
HOSTILE = [
    # newline-suffixed names (a `^...$` re.match accepts them)
    ('operator_name', 'acme\n', None),
    ('registry_name', 'acme\n', None),
    ('trust_domain', 'example.com\n', None),
    ('registry_did', 'did:web:registry.acme.example\n', None),
    ('spire_server_address', 'spire.frame.example\n', None),
    ('settings.FOO\n', 'x', 'FOO\\n'),
    ('settings.POSTGRES_USER', 'registry\nMINTING_AUTHORITY=enabled', 'POSTGRES_USER'),
    ('images.nginx', 'nginx:lab\n', None),
    ('federation_bind_address', '0.0.0.0\n', None),
    # HCL metacharacters in the SPIRE server address (agent.conf)
    ('spire_server_address', 'spire.frame.example"', None),
    ('spire_server_address', 'spire"\n}\nplugins {\n', None),
    ('spire_server_address', 'spire.frame.example # comment', None),
    ('spire_server_address', 'spire}', None),
    ('spire_server_address', '${file("/etc/shadow")}', None),
    ('spire_server_address', 'spire.frame.example:8081', None),
    ('spire_server_address', 'https://spire.frame.example', None),
    ('spire_server_address', '999.1.1.1', None),
    # YAML metacharacters (compose file)
    ('images.registry', 'registry:2.4\n    privileged: true', None),
    ('images.postgres', 'postgres:15 # pinned', None),
    ('images.redis', '"redis:7"', None),
    ('images.spire_agent', 'spire-agent: {a: b}', None),
    ('federation_bind_address', '0.0.0.0:9999:22', None),
    ('federation_bind_address', '[::]', None),
    ('extra_hosts', ['es.example.com: 192.0.2.10'], "'es.example.com: 192.0.2.10'"),
    ('extra_hosts', ['es.example.com:192.0.2.10\n'], "'es.example.com:192.0.2.10\\n'"),
    # bad image references
    ('images.registry', 'Images.Acme.Example/Registry:2.4', None),
    ('images.registry', 'registry:', None),
    ('images.registry', 'registry:-tag', None),
    ('images.registry', 'registry@sha256:abc', None),
    ('images.registry', 'registry:' + 't' * 129, None),
    ('images.cert_writer', 'cert writer:1.0', None),
    ('images.cert_writer', '', 'images.cert_writer is not set'),
    # URLs with tokens (EVENTSTORE_URL is a public setting: it appears in evidence and logs)
    ('settings.EVENTSTORE_URL', 'https://user:s3cr3t-token@eventstore.example.com/api/v1/events/',
     'https://<credentials>@eventstore.example.com/api/v1/events/'),
    ('settings.EVENTSTORE_URL', 'https://eventstore.example.com/api/v1/events/?token=s3cr3t-token',
     'https://eventstore.example.com/api/v1/events/?<query>'),
    ('settings.EVENTSTORE_URL', 'https://eventstore.example.com/api/v1/events/\n', 'EVENTSTORE_URL contains a line break'),
    ('settings.EVENTSTORE_URL', 'http://eventstore.example.com/api/v1/events/', None),
]


@pytest.mark.parametrize('option, value, named', HOSTILE, ids=['%s=%r' % (o, v) for o, v, dummy in HOSTILE])
def test_hostile_input_is_refused_with_a_message_naming_it(frame, option, value, named):
    problems = run(frame, **{option: value})['problems']
    assert len(problems) == 1, problems
    message = problems[0]
    assert (named or repr(value)) in message, message
    assert 's3cr3t-token' not in message


def test_hostile_inputs_are_more_than_twenty():
    assert len(HOSTILE) >= 20


@pytest.mark.parametrize('name', ['acme\n', 'acme\r\n', '\nacme', 'ac me', 'acme\x00'])
def test_names_match_as_whole_strings(name):
    with pytest.raises(_x509.X509Error):
        _x509.validate_operator_name(name)
    with pytest.raises(_x509.X509Error):
        _x509.validate_trust_domain(name + '.example')
    assert _envfile.key_problem(name.upper()) is not None
    assert _stack.problems({'registry_name': name, 'federation_port': 8443, 'cert_writer_interval': 300,
                            'timeout': 10, 'stack_dir': None, 'env_file': '.env.operator'}) != []


def test_env_key_with_a_newline_is_refused_by_operator_env():
    with pytest.raises(_envfile.EnvFileError) as err:
        _envfile.validate_request({'FOO\n': 'x'}, [], [])
    assert "'FOO\\n'" in str(err.value)
    with pytest.raises(_envfile.EnvFileError) as err:
        _envfile.validate_request({}, ['SECRET\n'], [])
    assert "'SECRET\\n'" in str(err.value)


def _jinja_patterns():
    """Every pattern given to a Jinja `match` test / filter in the roles' preflight tasks and vars."""
    found = []
    for role in sorted(os.listdir(os.path.join(REPO, 'roles'))):
        for sub in ('tasks/preflight.yml', 'vars/main.yml'):
            path = os.path.join(REPO, 'roles', role, sub)
            if not os.path.exists(path):
                continue
            with open(path, encoding='utf-8') as handle:
                text = handle.read()
            found += [(path, m) for m in re.findall(r"match(?:\(|', )'(\^[^']*)'\)", text)]
            data = yaml.safe_load(text)
            if isinstance(data, dict):
                found += [(path, v) for k, v in data.items() if k.endswith('_re') or k.endswith('_regex')]
    return found


def test_jinja_validators_are_anchored_at_the_very_end():
    patterns = _jinja_patterns()
    assert len(patterns) >= 10, patterns
    for path, pattern in patterns:
        assert not pattern.endswith('$'), '%s: %s ends with $ (matches before a trailing newline)' % (path, pattern)
        if pattern.endswith('\\Z'):
            # Whatever the pattern accepts, it does not accept it with a newline appended.
            samples = ('a', 'acme', 'registry.example.com', '/api/', 'a' * 64, 'reg:5000')
            assert all(not re.match(pattern, sample + '\n') for sample in samples)
