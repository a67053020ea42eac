package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

const testID = "spiffe://example.com/service/registry-acme"

// testPKI is a root CA plus an intermediate, like a SPIRE server with an upstream.
type testPKI struct {
	td        spiffeid.TrustDomain
	root      *x509.Certificate
	inter     *x509.Certificate
	interKey  crypto.Signer
	serialCtr int64
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newTestPKI(t *testing.T, trustDomain string) *testPKI {
	t.Helper()
	now := time.Now()
	rootKey, interKey := newKey(t), newKey(t)
	tdURI, _ := url.Parse("spiffe://" + trustDomain)
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"lab"}, CommonName: "lab root"},
		URIs:                  []*url.URL{tdURI},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	root := mustCert(t, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	interTmpl := *rootTmpl
	interTmpl.SerialNumber = big.NewInt(2)
	interTmpl.Subject.CommonName = "lab intermediate"
	inter := mustCert(t, &interTmpl, root, interKey.Public(), rootKey)
	return &testPKI{td: spiffeid.RequireTrustDomainFromString(trustDomain), root: root, inter: inter, interKey: interKey, serialCtr: 0x5f3a00}
}

// issue returns an X.509 SVID (leaf + intermediate) valid in [notBefore, notAfter).
func (p *testPKI) issue(t *testing.T, id string, notBefore, notAfter time.Time) *x509svid.SVID {
	t.Helper()
	key := newKey(t)
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	p.serialCtr++
	leaf := mustCert(t, &x509.Certificate{
		SerialNumber:          big.NewInt(p.serialCtr),
		Subject:               pkix.Name{Organization: []string{"SPIRE"}},
		URIs:                  []*url.URL{u},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, p.inter, key.Public(), p.interKey)
	return &x509svid.SVID{
		ID:           spiffeid.RequireFromString(id),
		Certificates: []*x509.Certificate{leaf, p.inter},
		PrivateKey:   key,
	}
}

func (p *testPKI) context(svids ...*x509svid.SVID) *workloadapi.X509Context {
	return &workloadapi.X509Context{
		SVIDs:   svids,
		Bundles: x509bundle.NewSet(x509bundle.FromX509Authorities(p.td, []*x509.Certificate{p.root})),
	}
}

// freshMaterial issues a valid SVID for testID and encodes it.
func (p *testPKI) freshMaterial(t *testing.T) *Material {
	t.Helper()
	now := time.Now()
	m, err := materialFromContext(p.context(p.issue(t, testID, now.Add(-time.Minute), now.Add(time.Hour))), "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readPair reads svid.pem and svid_key.pem from dir and checks they belong together
// and chain to bundle.pem; it returns the leaf.
func readPair(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(dir, svidFile))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	bundlePEM, err := os.ReadFile(filepath.Join(dir, bundleFile))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("svid.pem and svid_key.pem do not match: %v", err)
	}
	if len(pair.Certificate) != 2 {
		t.Fatalf("svid.pem has %d certificates, want leaf + intermediate", len(pair.Certificate))
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509.ParseCertificate(pair.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundlePEM) {
		t.Fatal("bundle.pem holds no certificate")
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("svid.pem does not chain to bundle.pem: %v", err)
	}
	return leaf
}

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}
