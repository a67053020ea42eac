// Managed by theprotocol.operator (role operator_stack); do not edit on the host.
//
// nginx-federation: the SPIFFE ID of the verified client certificate, for the allow-list map
// of the federation endpoints. nginx has no variable for a certificate's URI SAN, so this njs
// module reads the DER of $ssl_client_raw_cert and walks it:
//   Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//   TBSCertificate ::= SEQUENCE { [0] version, serial, signature, issuer, validity, subject,
//                                 subjectPublicKeyInfo, [1] issuerUID, [2] subjectUID, [3] extensions }
//   Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
//   subjectAltName (2.5.29.17) ::= SEQUENCE OF GeneralName; uniformResourceIdentifier is [6] IA5String
// spiffe_id returns the SPIFFE ID only for a certificate that nginx verified against the SPIRE
// bundle ($ssl_client_verify = SUCCESS) and that carries exactly one URI SAN, a well-formed
// spiffe:// ID (X.509-SVID rules); anything else, including a parse error, returns "" (denied).
// presented_spiffe_id is the same rule for the public proxy (role public_proxy), whose nginx
// accepts client certificates without CA validation (ssl_verify_client optional_no_ca) and
// passes them to the registry, which verifies the chain: the allow-list there is applied to the
// certificate the TLS handshake proved the client holds the key of, and the registry then
// refuses it unless it chains to the bundle. Both are needed; neither alone lets a peer through.
// Works with njs 0.7 (Debian bookworm's libnginx-mod-http-js) and 0.8 (the official nginx image).

var SAN_OID = [0x55, 0x1d, 0x11];  // 2.5.29.17
// SPIFFE ID: lowercase trust domain, path segments of letters, digits, '.', '-', '_'.
var SPIFFE_ID_RE = /^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._-]+)+$/;
var MAX_ID_LENGTH = 2048;

function tlv(der, pos, end) {
    if (pos + 2 > end) {
        throw new Error('truncated DER');
    }
    var tag = der[pos];
    if ((tag & 0x1f) === 0x1f) {
        throw new Error('multi-byte DER tag');
    }
    var len = der[pos + 1];
    var p = pos + 2;
    if (len & 0x80) {
        var n = len & 0x7f;
        if (n === 0 || n > 3) {
            throw new Error('unsupported DER length');
        }
        if (p + n > end) {
            throw new Error('truncated DER length');
        }
        len = 0;
        for (var i = 0; i < n; i++) {
            len = len * 256 + der[p + i];
        }
        p += n;
    }
    if (p + len > end) {
        throw new Error('DER element longer than its container');
    }
    return {tag: tag, start: p, end: p + len};
}

function children(der, outer) {
    var out = [];
    var pos = outer.start;
    while (pos < outer.end) {
        var item = tlv(der, pos, outer.end);
        out.push(item);
        pos = item.end;
    }
    return out;
}

function isSanOid(der, item) {
    if (item.tag !== 0x06 || item.end - item.start !== SAN_OID.length) {
        return false;
    }
    for (var i = 0; i < SAN_OID.length; i++) {
        if (der[item.start + i] !== SAN_OID[i]) {
            return false;
        }
    }
    return true;
}

function ascii(der, item) {
    var s = '';
    for (var i = item.start; i < item.end; i++) {
        var c = der[i];
        if (c < 0x21 || c > 0x7e) {
            throw new Error('URI SAN is not printable ASCII');
        }
        s += String.fromCharCode(c);
    }
    return s;
}

// The URI SANs of a DER certificate (throws on malformed DER or a repeated SAN extension).
function uriSans(der) {
    var cert = tlv(der, 0, der.length);
    if (cert.tag !== 0x30) {
        throw new Error('not a certificate');
    }
    var tbs = children(der, cert)[0];
    if (!tbs || tbs.tag !== 0x30) {
        throw new Error('no tbsCertificate');
    }
    var uris = [];
    var seen = false;
    var fields = children(der, tbs);
    for (var f = 0; f < fields.length; f++) {
        if (fields[f].tag !== 0xa3) {
            continue;
        }
        var list = children(der, fields[f])[0];
        if (!list || list.tag !== 0x30) {
            throw new Error('malformed extensions');
        }
        var exts = children(der, list);
        for (var e = 0; e < exts.length; e++) {
            var parts = children(der, exts[e]);
            if (parts.length < 2 || !isSanOid(der, parts[0])) {
                continue;
            }
            if (seen) {
                throw new Error('subjectAltName extension repeated');
            }
            seen = true;
            var value = parts[parts.length - 1];
            if (value.tag !== 0x04) {
                throw new Error('malformed subjectAltName extension');
            }
            var names = tlv(der, value.start, value.end);
            if (names.tag !== 0x30 || names.end !== value.end) {
                throw new Error('malformed GeneralNames');
            }
            var items = children(der, names);
            for (var g = 0; g < items.length; g++) {
                if (items[g].tag === 0x86) {
                    uris.push(ascii(der, items[g]));
                }
            }
        }
    }
    return uris;
}

function pemToDer(pem) {
    var m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+\/=\s]+)-----END CERTIFICATE-----/.exec(pem);
    if (!m) {
        throw new Error('no PEM certificate');
    }
    return Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
}

function spiffeIdOf(pem) {
    var uris = uriSans(pemToDer(pem));
    if (uris.length !== 1) {
        throw new Error(uris.length + ' URI SANs (an X.509-SVID has exactly one)');
    }
    var id = uris[0];
    if (id.length > MAX_ID_LENGTH || !SPIFFE_ID_RE.test(id) || /\/\.\.?(\/|$)/.test(id)) {
        throw new Error('URI SAN is not a SPIFFE ID');
    }
    return id;
}

// js_set $federation_peer_spiffe_id federation_authz.spiffe_id;
function spiffe_id(r) {
    if (r.variables.ssl_client_verify !== 'SUCCESS') {
        return '';
    }
    try {
        return spiffeIdOf(r.variables.ssl_client_raw_cert || '');
    } catch (err) {
        r.warn('federation_authz: client certificate without a usable SPIFFE ID: ' + err.message);
        return '';
    }
}

// js_set $theprotocol_public_peer_spiffe_id theprotocol_federation_authz.presented_spiffe_id;
function presented_spiffe_id(r) {
    var pem = r.variables.ssl_client_raw_cert || '';
    if (pem === '') {
        return '';
    }
    try {
        return spiffeIdOf(pem);
    } catch (err) {
        r.warn('federation_authz: client certificate without a usable SPIFFE ID: ' + err.message);
        return '';
    }
}

export default {spiffe_id: spiffe_id, presented_spiffe_id: presented_spiffe_id, spiffeIdOf: spiffeIdOf};
