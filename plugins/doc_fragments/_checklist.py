# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to this collection: may change at any time, do not use from elsewhere.

from __future__ import annotations


class ModuleDocFragment:
    # The thresholds of the security checklist's judgements: plugins/module_utils/_observe.py
    # CHECKLIST_ARGUMENT_SPEC (security_checklist, and incident_evidence with checklist=true).
    DOCUMENTATION = r"""
options:
  svid_min_remaining_seconds:
    description: The registry SVID must stay valid at least this long.
    type: int
    default: 30
  served_svid_grace:
    description:
      - Seconds to keep probing when the served certificate differs from the one on the volume, so that a rotation
        caught between the cert-writer's swap and nginx's reload (the nginx image polls every few seconds) is not
        reported as a missed reload.
    type: int
    default: 15
  x509pop_warn_days:
    description: Warn when the x509pop attestation certificate expires within this many days (fail once expired).
    type: int
    default: 30
  eventstore_window:
    description: Seconds of registry log to look at for EventStore writes and 401/403 refusals.
    type: int
    default: 300
  secret_max_age_days:
    description:
      - V(secrets_age) warns when a secret of C(.env.operator) was set longer ago than this many days, or when its age is
        unknown. The dates come from the rotation journal C(<env_file>.rotation.json) (written by
        M(theprotocol.operator.operator_env) when it generates a secret and by a completed rotation).
    type: int
    default: 90
"""
