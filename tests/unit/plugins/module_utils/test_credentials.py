# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_credentials: every declaration is complete and true of the real stack (the role's compose template
rendered with the role's defaults, and the compose configuration of a deployed lab stack); what is
derived from it in Python; and the copies in YAML files, which must equal it (a drift names the file)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist
from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials as c
from ansible_collections.theprotocol.operator.plugins.module_utils import _live_auth
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets
from ansible_collections.theprotocol.operator.plugins.modules import credential_rotate

REPO = Path(__file__).resolve().parents[4]
ROLES = REPO / 'roles'
HERE = os.path.dirname(os.path.abspath(__file__))
# `docker compose config --no-interpolate --format json` of the stack deployed on lab-host3.
LAB_CONFIG = json.load(open(os.path.join(HERE, 'fixtures', 'rotation_compose_config.json'), encoding='utf-8'))
IDS = [cred.key for cred in c.CREDENTIALS]


def _yaml(path):
    return yaml.safe_load((ROLES / path).read_text())


def render_compose():
    """roles/operator_stack/templates/docker-compose.operator.yml.j2 with the role's defaults and vars."""
    role = ROLES / 'operator_stack'
    variables = _yaml('operator_stack/defaults/main.yml')
    variables.update(_yaml('operator_stack/vars/main.yml'))
    variables.update(operator_stack_operator_name='acme', operator_stack_registry_name='acme',
                     operator_stack_registry_did='did:web:registry.acme.example.com',
                     operator_stack_spire_server_address='spire.example.com', operator_stack_x509pop_cert='',
                     operator_stack_x509pop_key='', operator_stack_trust_bundle='', ansible_managed='Ansible managed')
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters['to_json'] = json.dumps
    env.filters['regex_replace'] = lambda value, pattern, replacement='': re.sub(pattern, replacement, value)
    text = env.from_string((role / 'templates' / 'docker-compose.operator.yml.j2').read_text()).render(**variables)
    return text, yaml.safe_load(text)


COMPOSE_TEXT, COMPOSE = render_compose()


# ----------------------------------------------------------------------------- the declarations

@pytest.mark.parametrize('cred', c.CREDENTIALS, ids=IDS)
def test_every_declaration_is_complete(cred):
    assert re.match(r'^[A-Z][A-Z0-9_]*\Z', cred.key)
    assert cred.kind in c.KINDS and cred.apply in c.APPLIES and cred.undo in c.UNDOS
    assert cred.probe in c.PROBES, '%s has no probe kind' % cred.key
    assert cred.title and cred.consumers and cred.compose_secret
    assert cred.alphabet in _secrets.ALPHABETS
    assert _secrets.MIN_SECRET_BYTES <= cred.nbytes <= _secrets.MAX_SECRET_BYTES
    assert c.get(cred.key) is cred


@pytest.mark.parametrize('cred', c.CREDENTIALS, ids=IDS)
def test_apply_undo_and_server_agree(cred):
    # A credential changed live has a server (and a name for it in messages); one that is only recreated has none.
    undo = {c.ALTER_ROLE: c.UNDO_ALTER_ROLE, c.REDIS_ACL_ROLLOVER: c.UNDO_REDIS_ACL, c.RECREATE: c.UNDO_RECREATE}
    assert cred.undo == undo[cred.apply]
    assert (cred.server is None) == (cred.apply == c.RECREATE) == (cred.server_name is None)
    # The engine changes live exactly one PostgreSQL and one Redis credential.
    assert (cred.apply == c.ALTER_ROLE) == (cred.kind == c.POSTGRES)
    assert (cred.apply == c.REDIS_ACL_ROLLOVER) == (cred.kind == c.REDIS)


def test_keys_and_compose_secrets_are_unique_and_never_public():
    assert len(set(c.KEYS)) == len(c.KEYS) == len(c.CREDENTIALS)
    assert len(set(cred.compose_secret for cred in c.CREDENTIALS)) == len(c.CREDENTIALS)
    assert not set(c.KEYS) & _secrets.PUBLIC_ENV_KEYS


def test_probe_kinds_are_the_live_auth_kinds_and_run_on_the_server():
    assert set(c.LOGIN_PROBES) == set(_live_auth.SERVICE_OF)
    for key in c.LOGIN_KEYS:
        assert _live_auth.SERVICE_OF[c.get(key).probe] == c.get(key).server
    # The one probe outside _live_auth is the registry's /internal/status, in credential_rotate.verify.
    assert set(c.PROBES) - set(c.LOGIN_PROBES) == set([c.INTERNAL_KEY_PROBE])


@pytest.mark.parametrize('cred', c.CREDENTIALS, ids=IDS)
def test_generation_spec(cred):
    values = set(c.generate(cred.key) for dummy in range(20))
    assert len(values) == 20
    for value in values:
        assert _secrets.GENERATED_SECRET_RE.match(value) and _secrets.weakness(value, cred.key) is None
        assert len(value) == len(_secrets.generate_secret(cred.nbytes, cred.alphabet))
    assert len(c.generate(cred.key, 16)) == 22


def test_lookups():
    assert c.key_of(c.POSTGRES) == 'POSTGRES_PASSWORD' and c.key_of(c.REDIS) == 'REDIS_PASSWORD'
    assert c.key_of('no-such-kind') is None
    with pytest.raises(KeyError):
        c.get('OPERATOR_NAME')


# ----------------------------------------------------------------------------- true of the real stack

@pytest.mark.parametrize('config', [COMPOSE, LAB_CONFIG], ids=['role template', 'lab stack'])
@pytest.mark.parametrize('cred', c.CREDENTIALS, ids=IDS)
def test_consumers_and_server_are_services_of_the_stack(config, cred):
    services = set(config['services'])
    assert set(cred.consumers) <= services
    assert cred.server is None or cred.server in services
    # The services that really receive the value (compose secret or ${KEY}) are the declared consumers.
    assert sorted(_rotation.consumers(config, cred.key)) == sorted(cred.consumers)


@pytest.mark.parametrize('cred', c.CREDENTIALS, ids=IDS)
def test_compose_template_wires_each_credential_as_a_secret_file(cred):
    assert COMPOSE['secrets'][cred.compose_secret] == {'environment': cred.key}
    for service in cred.consumers:
        spec = COMPOSE['services'][service]
        assert cred.compose_secret in spec.get('secrets', []), (service, cred.compose_secret)
        assert spec['environment'][cred.key + '_FILE'] == '/run/secrets/' + cred.compose_secret, service


def test_compose_template_secrets_are_the_registry():
    sourced = dict((name, spec.get('environment')) for name, spec in COMPOSE['secrets'].items()
                   if isinstance(spec, dict) and spec.get('environment'))
    assert sourced == dict((cred.compose_secret, cred.key) for cred in c.CREDENTIALS), \
        'roles/operator_stack/templates/docker-compose.operator.yml.j2: top-level secrets differ from _credentials'


def test_compose_template_interpolates_public_settings_only():
    # A credential interpolated into an environment would show in `docker inspect`: they travel as secret files.
    referenced = set(re.findall(r'\$\{([A-Za-z_][A-Za-z0-9_]*)', COMPOSE_TEXT))
    assert referenced and referenced <= _secrets.PUBLIC_ENV_KEYS


def test_plan_of_the_lab_stack_keeps_every_server_and_recreates_the_other_consumers():
    plan = _rotation.plan_services(LAB_CONFIG, list(c.KEYS))
    assert plan['live'] == dict((cred.server, [cred.key]) for cred in c.CREDENTIALS if cred.server)
    assert plan['recreate'] == sorted(set(s for cred in c.CREDENTIALS for s in cred.consumers if s != cred.server))


# ----------------------------------------------------------------------------- derived in Python

def test_rotation_checklist_and_live_auth_are_derived():
    assert _rotation.SUPPORTED_SECRETS == c.KEYS == ('POSTGRES_PASSWORD', 'REDIS_PASSWORD', 'INTERNAL_API_KEY')
    assert (_rotation.PG_KEY, _rotation.REDIS_KEY) == ('POSTGRES_PASSWORD', 'REDIS_PASSWORD')
    assert _checklist.SECRET_KEYS == c.KEYS
    assert _checklist.DB_SECRET_KEYS == c.LOGIN_KEYS == ('POSTGRES_PASSWORD', 'REDIS_PASSWORD')
    assert _checklist.DB_SECRET_SERVICES == {'POSTGRES_PASSWORD': 'db', 'REDIS_PASSWORD': 'redis'}
    assert _live_auth.KIND_OF_KEY == {'POSTGRES_PASSWORD': 'postgres', 'REDIS_PASSWORD': 'redis'}


def test_validate_selection_names_the_registry():
    assert _rotation.validate_selection(['INTERNAL_API_KEY', 'POSTGRES_PASSWORD']) == ['POSTGRES_PASSWORD',
                                                                                       'INTERNAL_API_KEY']
    with pytest.raises(_rotation.RotationError) as info:
        _rotation.validate_selection(['FEDERATION_LICENSE_KEY'])
    assert 'only %s are rotated live' % ', '.join(c.ROTATABLE) in str(info.value)


# ----------------------------------------------------------------------------- the roles read the registry

def test_operator_stack_generates_every_credential_from_the_registry():
    """No list of keys in the role: its env task generates lookup('theprotocol.operator.credentials')."""
    defaults = _yaml('operator_stack/defaults/main.yml')['operator_stack_env_secrets']
    specs = _yaml('operator_stack/meta/argument_specs.yml')['argument_specs']['main']['options']
    assert defaults == [] and specs['operator_stack_env_secrets']['default'] == [], \
        'operator_stack_env_secrets holds extra keys only; the credentials come from the registry'
    env_task = (ROLES / 'operator_stack' / 'tasks' / 'env.yml').read_text()
    assert "lookup('theprotocol.operator.credentials', wantlist=True) + operator_stack_env_secrets" in env_task


def test_secret_rotation_checks_its_keys_against_the_registry():
    specs = _yaml('secret_rotation/meta/argument_specs.yml')['argument_specs']['main']['options']
    assert 'choices' not in specs['secret_rotation_secrets'], 'the preflight checks them against the registry'
    preflight = (ROLES / 'secret_rotation' / 'tasks' / 'preflight.yml').read_text()
    assert "lookup('theprotocol.operator.credentials', rotatable=true, wantlist=True)" in preflight
    assert 'INTERNAL_API_KEY' not in preflight, 'roles/secret_rotation/tasks/preflight.yml: no list of keys'


def test_credential_rotate_checks_its_keys_against_the_registry():
    options = yaml.safe_load(credential_rotate.DOCUMENTATION)['options']
    assert 'choices' not in options['secrets']
    with pytest.raises(_rotation.RotationError, match='Cannot rotate BOGUS_KEY: only POSTGRES_PASSWORD, '
                       'REDIS_PASSWORD, INTERNAL_API_KEY are rotated live. Nothing was changed.'):
        _rotation.validate_selection(['REDIS_PASSWORD', 'BOGUS_KEY'])
