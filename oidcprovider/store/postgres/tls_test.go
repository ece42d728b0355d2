package postgres

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// writePEM writes one PEM block to path, owned like the server's directory when the server runs
// as another user.
func writePEM(t *testing.T, path, typ string, der []byte, owner os.FileInfo) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, ok := owner.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
			t.Fatal(err)
		}
	}
}

// The tls keys: a server certificate signed by the ca_file's authority, for server_name, is
// accepted (and the connection is encrypted); another name or another authority is refused
// with an error that is not ErrUnavailable (it is the configuration, not the database).
func TestTLS(t *testing.T) {
	srv := newServer(t)
	dsn := srv.Database(t)
	owner, err := os.Stat(srv.Dir)
	if err != nil {
		t.Fatal(err)
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey, otherKey := newKey(), newKey(), newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "db.test"}, DNSNames: []string{"db.test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &otherKey.PublicKey, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKeyDER, _ := x509.MarshalECPrivateKey(srvKey)
	dir := t.TempDir()
	writePEM(t, filepath.Join(srv.Dir, "server.crt"), "CERTIFICATE", srvDER, owner)
	writePEM(t, filepath.Join(srv.Dir, "server.key"), "EC PRIVATE KEY", srvKeyDER, owner)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER, owner)
	writePEM(t, filepath.Join(dir, "other.pem"), "CERTIFICATE", otherDER, owner)

	admin, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{
		fmt.Sprintf("ALTER SYSTEM SET ssl_cert_file = '%s'", filepath.Join(srv.Dir, "server.crt")),
		fmt.Sprintf("ALTER SYSTEM SET ssl_key_file = '%s'", filepath.Join(srv.Dir, "server.key")),
		"ALTER SYSTEM SET ssl = on",
		"SELECT pg_reload_conf()",
	} {
		if _, err := admin.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, q := range []string{"ALTER SYSTEM RESET ssl", "ALTER SYSTEM RESET ssl_cert_file", "ALTER SYSTEM RESET ssl_key_file", "SELECT pg_reload_conf()"} {
			_, _ = admin.Exec(context.Background(), q)
		}
	})
	time.Sleep(200 * time.Millisecond) // the reload is signalled, not waited for
	cfg, _ := pgx.ParseConfig(dsn)
	base := Config{Address: fmt.Sprintf("tcp://%s:%d", srv.Host, srv.Port), Database: cfg.Database, Username: pgtest.User, Password: pgtest.Password}
	with := func(tc TLSConfig) Config { c := base; c.TLS = &tc; return c }

	for _, tc := range []TLSConfig{
		{CAFile: filepath.Join(dir, "ca.pem"), ServerName: "db.test"},
		{CAFile: filepath.Join(dir, "ca.pem"), MinimumVersion: "TLS1.3"}, // the certificate names 127.0.0.1 too
		{SkipVerify: true},
	} {
		s := openConfig(t, with(tc), options{})
		var encrypted bool
		if err := s.pool.QueryRow(t.Context(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&encrypted); err != nil || !encrypted {
			t.Fatalf("%+v: connection encrypted %v (%v)", tc, encrypted, err)
		}
		must(t, s.Put(t.Context(), store.Entry{Key: []byte("k"), Value: []byte("v")}))
		if !s.Trusted() {
			t.Fatalf("%+v: the listener is not up", tc)
		}
	}
	for _, tc := range []TLSConfig{
		{CAFile: filepath.Join(dir, "ca.pem"), ServerName: "other.test"},
		{CAFile: filepath.Join(dir, "other.pem"), ServerName: "db.test"},
		{ServerName: "db.test"}, // the system's roots do not know the test authority
	} {
		_, err := Open(t.Context(), with(tc), nil)
		if err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%+v: %v, want a certificate error that is not ErrUnavailable", tc, err)
		}
	}
}
