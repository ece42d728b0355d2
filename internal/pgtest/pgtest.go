// Package pgtest starts throwaway PostgreSQL servers for tests: initdb in a temporary directory,
// a free loopback port, the server run as an unprivileged user when the test runs as root (as CI
// does), and everything removed when the test ends. It uses Debian's postgresql package; without
// it a test is skipped on a developer's machine and fails when PORTCULLIS_REQUIRE_POSTGRES or CI
// is set, so CI never passes for want of a database.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// User and Password are the superuser every throwaway server is made with; the server accepts
// them over TCP with SCRAM, as a real deployment's role would be.
const (
	User     = "portcullis"
	Password = "pgtest-password"
)

// Server is one throwaway PostgreSQL server. Its methods are safe for concurrent use.
type Server struct {
	// Host and Port are where the server listens (127.0.0.1 and a free port).
	Host string
	Port int
	// Dir holds the data directory and the server's Unix socket.
	Dir string

	bin  string
	cred *syscall.Credential
	mu   sync.Mutex
	up   bool
	tb   testing.TB
}

// Require reports whether a missing PostgreSQL must fail the test rather than skip it.
func Require() bool {
	return os.Getenv("PORTCULLIS_REQUIRE_POSTGRES") != "" || os.Getenv("CI") != ""
}

// BinDir finds the directory of Debian's postgres, initdb and pg_ctl.
func BinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("pgtest: no PostgreSQL server binaries (install Debian's postgresql package)")
}

// Start initialises and starts a new server, stopped and removed when tb ends. It skips tb when
// PostgreSQL is not installed, unless Require says it must be there.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := BinDir()
	if err != nil {
		if Require() {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
	s := &Server{Host: "127.0.0.1", bin: bin, tb: tb}
	tb.Cleanup(s.Close)
	if err := s.launch(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// Launch initialises and starts a new server outside a test (the load harness in bench/ uses
// it): the same server Start gives a test. The caller must Close it. Its StartAgain panics where
// a test's would fail the test.
func Launch() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", bin: bin}
	if err := s.launch(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the server (pg_ctl stop -m immediate) and removes its directory. Start's cleanup
// calls it; a server from Launch must be closed by its caller.
func (s *Server) Close() {
	s.stop("immediate")
	if s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// launch makes the server's directory, runs initdb, configures and starts the server, and
// creates the database named User.
func (s *Server) launch() error {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	s.Dir = dir
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres user (or nobody).
		s.cred, err = unprivileged()
		if err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(Password+"\n"), 0o644); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if s.cred != nil {
		_ = os.Chown(pwfile, int(s.cred.Uid), int(s.cred.Gid))
	}
	if out, err := s.command("initdb", "-D", s.data(), "-U", User, "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C").CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	if s.Port, err = freePort(); err != nil {
		return err
	}
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"+
		"fsync = off\nmax_connections = 300\nshared_buffers = 32MB\n",
		s.Port, dir)
	f, err := os.OpenFile(filepath.Join(s.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: postgresql.conf: %w", err)
	}
	if err := s.start(); err != nil {
		return err
	}
	return s.exec(context.Background(), "postgres", "CREATE DATABASE "+User)
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("pgtest: running as root and found no postgres or nobody user to run PostgreSQL as")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// DSN returns a connection string for database on this server, as the superuser with its password.
func (s *Server) DSN(database string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", User, Password, s.Host, s.Port, database)
}

// Database creates a new, empty database with a unique name and returns its DSN; the database
// lives as long as the server.
func (s *Server) Database(tb testing.TB) string {
	tb.Helper()
	dsn, err := s.NewDatabase()
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// NewDatabase is Database outside a test: it creates a new, empty database with a unique name
// and returns its DSN.
func (s *Server) NewDatabase() (string, error) {
	name := fmt.Sprintf("t%d", time.Now().UnixNano())
	if err := s.exec(context.Background(), "postgres", "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

func (s *Server) exec(ctx context.Context, database, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(database))
	if err != nil {
		return fmt.Errorf("pgtest: connecting: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: %s: %w", sql, err)
	}
	return nil
}

// Stop stops the server as a crash would (pg_ctl stop -m immediate), keeping its data so that
// StartAgain brings it back on the same port. Clients see their connections drop.
func (s *Server) Stop() { s.stop("immediate") }

func (s *Server) stop(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return
	}
	if out, err := s.command("pg_ctl", "stop", "-D", s.data(), "-m", mode, "-w").CombinedOutput(); err != nil {
		if s.tb != nil {
			s.tb.Logf("pgtest: pg_ctl stop: %v\n%s", err, out)
		} else {
			fmt.Fprintf(os.Stderr, "pgtest: pg_ctl stop: %v\n%s\n", err, out)
		}
	}
	s.up = false
}

// StartAgain starts the server (again) and waits until it accepts connections. A failure fails
// the test (panics for a server from Launch).
func (s *Server) StartAgain() {
	if s.tb != nil {
		s.tb.Helper()
	}
	if err := s.start(); err != nil {
		if s.tb != nil {
			s.tb.Fatal(err)
		}
		panic(err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		return nil
	}
	logFile := filepath.Join(s.Dir, "server.log")
	if out, err := s.command("pg_ctl", "start", "-D", s.data(), "-l", logFile, "-w", "-t", "60").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	s.up = true
	return nil
}
