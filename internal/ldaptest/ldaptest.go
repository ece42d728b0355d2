// Package ldaptest starts throwaway OpenLDAP servers for tests: Debian's slapd with a config
// made in a temporary directory (the mdb backend, the core, cosine, nis and inetOrgPerson
// schemas, the memberOf overlay, and the ppolicy overlay without a default policy, which defines
// pwdReset and the like), listening on free loopback ports for ldap:// and ldaps:// (a
// certificate the package makes) and on a Unix socket for ldapi://, run as an unprivileged user
// when the test runs as root, and removed when the test ends. Without slapd a test is skipped on
// a developer's machine and fails when PORTCULLIS_REQUIRE_LDAP is set, so CI never passes for
// want of a directory.
//
// The directory's suffix is BaseDN, administered by AdminDN with AdminPassword (the rootdn, which
// no access rule limits). The access rules let every bound user read every entry, let a user
// write their own userPassword (the password-modify extended operation, RFC 3062, included), and
// let any entry under ou=services write everyone's userPassword: a test's service account lives
// there (ServiceDN is a good name for it).
package ldaptest

import (
	"bytes"
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
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The directory every server holds, and its administrator.
const (
	// BaseDN is the suffix of the directory (its entry is made by Start).
	BaseDN = "dc=example,dc=com"
	// AdminDN is the rootdn, bound with AdminPassword; no access rule limits it.
	AdminDN = "cn=admin,dc=example,dc=com"
	// AdminPassword is AdminDN's password.
	AdminPassword = "ldaptest-admin-password"
	// ServiceDN is the conventional service account of a test's LDIF: any entry under
	// ou=services may set every user's password.
	ServiceDN = "cn=portcullis,ou=services,dc=example,dc=com"
)

// Binaries the package runs.
const (
	slapdBin     = "/usr/sbin/slapd"
	slapaddBin   = "/usr/sbin/slapadd"
	ldapmodifyCL = "ldapmodify"
)

// Server is one throwaway slapd. Its methods are safe for concurrent use.
type Server struct {
	// Dir holds the configuration, the database, the certificate and the ldapi socket.
	Dir string

	port, tlsPort int
	cred          *syscall.Credential
	caPEM         []byte
	tb            testing.TB

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Require reports whether a missing slapd must fail the test rather than skip it
// (PORTCULLIS_REQUIRE_LDAP set).
func Require() bool { return os.Getenv("PORTCULLIS_REQUIRE_LDAP") != "" }

// Start makes a new directory holding BaseDN's entry and the entries of ldif (added with
// ldapadd after the start, so the memberOf overlay sees group members), starts slapd, and stops
// and removes it when tb ends. It skips tb when slapd or ldap-utils is not installed, unless
// Require says they must be there.
func Start(tb testing.TB, ldif string) *Server {
	tb.Helper()
	if err := installed(); err != nil {
		if Require() {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
	s := &Server{tb: tb}
	tb.Cleanup(s.close)
	if err := s.launch(); err != nil {
		tb.Fatal(err)
	}
	if strings.TrimSpace(ldif) != "" {
		if err := s.modify(ldif, true); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

func installed() error {
	if _, err := os.Stat(slapdBin); err != nil {
		return errors.New("ldaptest: no " + slapdBin + " (install Debian's slapd package)")
	}
	if _, err := exec.LookPath(ldapmodifyCL); err != nil {
		return errors.New("ldaptest: no ldapmodify (install Debian's ldap-utils package)")
	}
	return nil
}

// URL is the server's plain ldap:// address (StartTLS is offered there too).
func (s *Server) URL() string { return fmt.Sprintf("ldap://127.0.0.1:%d", s.port) }

// TLSURL is the server's ldaps:// address; its certificate is for 127.0.0.1 and localhost,
// signed by CAPEM.
func (s *Server) TLSURL() string { return fmt.Sprintf("ldaps://127.0.0.1:%d", s.tlsPort) }

// SocketURL is the server's ldapi:// address: the socket's path, URL-escaped, as the host.
func (s *Server) SocketURL() string { return "ldapi://" + url.PathEscape(s.socket()) }

// CAPEM is the PEM certificate the server's TLS certificate is signed by (itself).
func (s *Server) CAPEM() []byte { return s.caPEM }

// CAPool is a pool holding CAPEM.
func (s *Server) CAPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(s.caPEM)
	return p
}

// BaseDN is the directory's suffix (the package's BaseDN).
func (s *Server) BaseDN() string { return BaseDN }

// AdminDN is the directory's rootdn (the package's AdminDN).
func (s *Server) AdminDN() string { return AdminDN }

// AdminPassword is AdminDN's password.
func (s *Server) AdminPassword() string { return AdminPassword }

func (s *Server) socket() string { return filepath.Join(s.Dir, "ldapi") }

// Modify applies ldif as the administrator with ldapmodify: records with a changetype (add,
// modify, delete, modrdn), or plain entries, which are added. It fails the test on an error.
func (s *Server) Modify(tb testing.TB, ldif string) {
	tb.Helper()
	if err := s.modify(ldif, false); err != nil {
		tb.Fatal(err)
	}
}

func (s *Server) modify(ldif string, add bool) error {
	args := []string{"-x", "-H", s.URL(), "-D", AdminDN, "-w", AdminPassword}
	if add {
		args = append(args, "-a")
	}
	cmd := exec.Command(ldapmodifyCL, args...)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ldaptest: ldapmodify: %w\n%s", err, out)
	}
	return nil
}

func (s *Server) launch() error {
	dir, err := os.MkdirTemp("", "ldaptest-")
	if err != nil {
		return fmt.Errorf("ldaptest: %w", err)
	}
	s.Dir = dir
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		return fmt.Errorf("ldaptest: %w", err)
	}
	if s.port, err = freePort(); err != nil {
		return err
	}
	if s.tlsPort, err = freePort(); err != nil {
		return err
	}
	cert, key, err := selfSigned()
	if err != nil {
		return err
	}
	s.caPEM = cert
	files := map[string][]byte{
		"cert.pem":   cert,
		"key.pem":    key,
		"slapd.conf": []byte(s.config()),
		"base.ldif": []byte("dn: " + BaseDN + "\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n" +
			"o: Example\ndc: example\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("ldaptest: %w", err)
		}
	}
	if out, err := exec.Command(slapaddBin, "-f", filepath.Join(dir, "slapd.conf"), "-l", filepath.Join(dir, "base.ldif")).CombinedOutput(); err != nil {
		return fmt.Errorf("ldaptest: slapadd: %w\n%s", err, out)
	}
	if os.Geteuid() == 0 {
		// slapd can run as root, but a directory should not: run it as openldap (or nobody)
		if s.cred, err = unprivileged(); err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("ldaptest: %w", err)
		}
		err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
		})
		if err != nil {
			return fmt.Errorf("ldaptest: %w", err)
		}
	}
	return s.start()
}

// config is the slapd.conf of the server.
func (s *Server) config() string {
	var b strings.Builder
	for _, schema := range []string{"core", "cosine", "nis", "inetorgperson"} {
		fmt.Fprintf(&b, "include /etc/ldap/schema/%s.schema\n", schema)
	}
	fmt.Fprintf(&b, `pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload ppolicy
TLSCertificateFile %[1]s/cert.pem
TLSCertificateKeyFile %[1]s/key.pem
password-hash {SSHA}

database mdb
maxsize 67108864
suffix "%[2]s"
rootdn "%[3]s"
rootpw "%[4]s"
directory %[1]s/data
access to attrs=userPassword
	by self write
	by dn.children="ou=services,%[2]s" write
	by anonymous auth
	by * none
access to *
	by users read
	by * none
overlay memberof
overlay ppolicy
`, s.Dir, BaseDN, AdminDN, AdminPassword)
	return b.String()
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"openldap", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("ldaptest: running as root and found no openldap or nobody user to run slapd as")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("ldaptest: a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// selfSigned makes a P-256 certificate for 127.0.0.1 and localhost that signs itself.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ldaptest: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "ldaptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ldaptest: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("ldaptest: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s), keeping its data so that StartAgain
// brings it back on the same ports. Clients see their connections drop.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// StartAgain starts the stopped server again on the same ports and waits until it answers. A
// failure fails the test.
func (s *Server) StartAgain() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatal(err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	urls := s.URL() + "/ " + s.TLSURL() + "/ " + s.SocketURL()
	cmd := exec.Command(slapdBin, "-d", "0", "-h", urls, "-f", filepath.Join(s.Dir, "slapd.conf"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("ldaptest: starting slapd: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("ldaptest: slapd exited at start:\n%s", out.String())
		default:
		}
		if ready(s.port) && ready(s.tlsPort) {
			s.cmd, s.done = cmd, done
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("ldaptest: slapd did not listen within 15 s:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ready(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (s *Server) close() {
	s.Stop()
	if s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// Skeleton is the LDIF every test directory starts with: ou=people, ou=groups and ou=services
// under BaseDN, and the service account cn=portcullis,ou=services with servicePassword. A test
// appends its people and groups.
func Skeleton(servicePassword string) string {
	return `dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=com
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=com
objectClass: organizationalUnit
ou: services

dn: cn=portcullis,ou=services,dc=example,dc=com
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: portcullis
userPassword: ` + servicePassword + "\n\n"
}
