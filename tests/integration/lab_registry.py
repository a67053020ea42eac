"""The lab's image registry (https://localhost:5000, the lab's TLS CA), for tests that need a newer image
under the tag a stack runs. Each caller uses a tag of its own (a copy of the lab's manifest): the lab tags
are shared by every host, and a newer image under them would fail the checklist of the modules running in
parallel on other hosts. Shared by test_security_checklist_federation.py and test_incident_response.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
import time
import urllib.request

import yaml

from conftest import STATE, run_playbook

ACCEPT = "application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json"


def registry_api(method, path, body=None, headers=None):
    context = ssl.create_default_context(cafile=str(STATE / "pki" / "tls-ca.crt"))
    req = urllib.request.Request(f"https://localhost:5000{path}", data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, context=context, timeout=30) as resp:
        return resp.read(), dict(resp.headers)


def deploy_with_tag(host_name, tmp_path, service, tag):
    """site.yml on ``host_name`` with the image of ``service`` taken from ``tag`` of its lab repository."""
    images = dict(yaml.safe_load((STATE / "inventory.yml").read_text())["all"]["vars"]["theprotocol_images"])
    images[service] = images[service].rsplit(":", 1)[0] + ":" + tag
    extra = tmp_path / f"images-{service}-{tag}.json"
    extra.write_text(json.dumps({"theprotocol_images": images}))
    rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{host_name}", "-e", f"@{extra}")
    assert rc == 0, result


@contextlib.contextmanager
def own_tag(repo, tag):
    """``repo:tag``, a copy of ``repo:lab``, for the duration; yields (manifest, media type)."""
    manifest, headers = registry_api("GET", f"/v2/{repo}/manifests/lab", headers={"Accept": ACCEPT})
    media = headers["Content-Type"]
    registry_api("PUT", f"/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": media})
    try:
        yield manifest, media
    finally:
        registry_api("PUT", f"/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": media})


def push_newer(repo, tag, manifest, media, label):
    """A newer image under ``repo:tag``: the same layers, a config with one more label (a new digest)."""
    doc = json.loads(manifest)
    config, dummy = registry_api("GET", f"/v2/{repo}/blobs/{doc['config']['digest']}")
    cfg = json.loads(config)
    cfg.setdefault("config", {}).setdefault("Labels", {})[label] = str(time.time())
    new_config = json.dumps(cfg).encode()
    digest = "sha256:" + hashlib.sha256(new_config).hexdigest()
    dummy, upload = registry_api("POST", f"/v2/{repo}/blobs/uploads/", b"")
    location = upload["Location"]
    location = location if location.startswith("http") else f"https://localhost:5000{location}"
    sep = "&" if "?" in location else "?"
    registry_api("PUT", location.replace("https://localhost:5000", "") + f"{sep}digest={digest}", new_config,
                 {"Content-Type": "application/octet-stream"})
    doc["config"] = dict(doc["config"], digest=digest, size=len(new_config))
    registry_api("PUT", f"/v2/{repo}/manifests/{tag}", json.dumps(doc).encode(), {"Content-Type": media})
