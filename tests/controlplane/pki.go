package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Client identities written by ensurePKI: DIR/<name>.crt, DIR/<name>.key, and, once the API
// server's port is known, DIR/<name>.kubeconfig.
var clients = []struct {
	name, cn string
	orgs     []string
}{
	{"admin", "botfleet-admin", []string{"system:masters"}},
	{"controller-manager", "system:kube-controller-manager", nil},
	{"nobody", "nobody", nil}, // no bindings: the RBAC negative control
	// The process kubelet's binder (operator/tests/support/kubelet.rs): binding pods to nodes is
	// the scheduler's part, done under the scheduler's identity (bootstrap RBAC: system:kube-scheduler).
	{"scheduler", "system:kube-scheduler", nil},
}

// ensurePKI creates, once, in dir (existing files are kept, so a restart reuses them):
//
//	ca.crt, ca.key                 CA: signs everything below; --client-ca-file, --root-ca-file,
//	                               and the controller manager's CSR signer
//	apiserver.crt, apiserver.key   serving cert for 127.0.0.1, ::1, localhost, kubernetes.default...
//	sa.key, sa.pub                 service-account token signing key pair
//	admin.*, controller-manager.*, nobody.*   client certs (see clients)
//	front-proxy-ca.*, front-proxy-client.*    the aggregation layer's request-header CA and
//	                               the API server's client cert for it
//
// Keys are ECDSA P-256 in PKCS#8 PEM.
func ensurePKI(dir string) error {
	ca, caKey, err := ensureCA(dir, "ca", "botfleet-test-ca")
	if err != nil {
		return err
	}
	// The front proxy's CA is a second CA, as Kubernetes requires: a client cert signed by the
	// client CA must not be able to assert any identity through the X-Remote-* headers.
	fpCA, fpKey, err := ensureCA(dir, "front-proxy-ca", "botfleet-test-front-proxy-ca")
	if err != nil {
		return err
	}
	if err := leaf(dir, "apiserver", ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP(serviceIP)},
	}); err != nil {
		return err
	}
	for _, c := range clients {
		if err := leaf(dir, c.name, ca, caKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: c.cn, Organization: c.orgs},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return err
		}
	}
	if err := leaf(dir, "front-proxy-client", fpCA, fpKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "front-proxy-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}

	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if !exists(saKey) || !exists(saPub) {
		key, err := newKey()
		if err != nil {
			return err
		}
		pub, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return err
		}
		if err := writeKey(saKey, key); err != nil {
			return err
		}
		if err := writePEM(saPub, "PUBLIC KEY", pub, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfigs writes DIR/<client>.kubeconfig for every client identity, pointing at server.
func writeKubeconfigs(dir, server string) error {
	for _, c := range clients {
		if err := writeKubeconfig(dir, c.name, server); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfig writes DIR/<name>.kubeconfig: server, the CA, and the client cert DIR/<name>.{crt,key}.
func writeKubeconfig(dir, name, server string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["botfleet-test"] = &clientcmdapi.Cluster{
		Server:               server,
		CertificateAuthority: filepath.Join(dir, "ca.crt"),
	}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate: filepath.Join(dir, name+".crt"),
		ClientKey:         filepath.Join(dir, name+".key"),
	}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "botfleet-test", AuthInfo: name}
	cfg.CurrentContext = name
	path := filepath.Join(dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path+".tmp"); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// runClientCert is `controlplane client-cert DIR NAME CN [ORG...]`: a client certificate for
// CN and the organizations (groups) ORG, signed by DIR's CA, and DIR/NAME.kubeconfig for the
// API server that DIR/admin.kubeconfig names (so run it after the API server's READY). An
// existing NAME.{crt,key} is kept. The process kubelet gets its node identity this way
// (CN=system:node:<node>, O=system:nodes).
func runClientCert(args []string) int {
	if len(args) < 3 {
		usage()
	}
	dir, name, cn, orgs := args[0], args[1], args[2], args[3:]
	ca, caKey, err := loadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		fatal(err)
	}
	if err := leaf(dir, name, ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		fatal(err)
	}
	admin, err := clientcmd.LoadFromFile(filepath.Join(dir, "admin.kubeconfig"))
	if err != nil {
		fatal(err)
	}
	cluster, ok := admin.Clusters["botfleet-test"]
	if !ok {
		fatal(fmt.Errorf("%s/admin.kubeconfig has no cluster botfleet-test", dir))
	}
	if err := writeKubeconfig(dir, name, cluster.Server); err != nil {
		fatal(err)
	}
	fmt.Println(filepath.Join(dir, name+".kubeconfig"))
	return 0
}

// ensureCA creates DIR/<name>.crt and DIR/<name>.key, a self-signed CA, unless they exist.
func ensureCA(dir, name, cn string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if !exists(certPath) || !exists(keyPath) {
		key, err := newKey()
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{CommonName: cn},
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := sign(tmpl, nil, key.Public(), key)
		if err != nil {
			return nil, nil, err
		}
		if err := writeKey(keyPath, key); err != nil {
			return nil, nil, err
		}
		if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
			return nil, nil, err
		}
	}
	return loadCA(certPath, keyPath)
}

// leaf creates DIR/<name>.crt and DIR/<name>.key, signed by ca, unless they exist.
func leaf(dir, name string, ca *x509.Certificate, caKey crypto.Signer, tmpl *x509.Certificate) error {
	crt, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if exists(crt) && exists(keyPath) {
		return nil
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := sign(tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(crt, "CERTIFICATE", der, 0o644)
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	if parent == nil {
		parent = tmpl
	}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func loadCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", keyPath)
	}
	return cert, signer, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
