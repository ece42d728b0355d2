// Package e2e runs the built Caddy binary with Portcullis on loopback and drives it with real
// OAuth 2.0 clients, as an administrator and a monitor would.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// caddyBin is the binary under test: $PORTCULLIS_CADDY, or one built from ./cmd/caddy (with
// the race detector when raceBuild says so).
var caddyBin string

// raceBuild reports whether the binary the tests build gets the race detector, so it sees the
// server under the tests' load: PORTCULLIS_E2E_RACE=1 (or true) asks for it, =0 (or false)
// refuses it, and unset it follows CI=true (.ci/run sets PORTCULLIS_E2E_RACE=1).
func raceBuild() bool {
	if v, err := strconv.ParseBool(os.Getenv("PORTCULLIS_E2E_RACE")); err == nil {
		return v
	}
	return os.Getenv("CI") == "true"
}

// raceReport starts every report of the race detector in the server's output.
const raceReport = "WARNING: DATA RACE"

// slow scales the harness's waits (an HTTP request, a server's start): 1, or 3 for a binary
// built with -race, which runs digests and TLS handshakes several times slower.
var slow time.Duration = 1

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	caddyBin = os.Getenv("PORTCULLIS_CADDY")
	if caddyBin == "" {
		dir, err := os.MkdirTemp("", "portcullis-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		caddyBin = filepath.Join(dir, "caddy")
		args, what := []string{"build", "-o", caddyBin}, "caddy"
		if raceBuild() {
			args, what = append(args, "-race"), "caddy with -race"
			slow = 3
		}
		build := exec.Command("go", append(args, "../cmd/caddy")...)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		start := time.Now()
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building caddy:", err)
			return 1
		}
		// go test shows this with -v, or when the package fails
		fmt.Printf("e2e: built %s in %.1fs\n", what, time.Since(start).Seconds())
	}
	return m.Run()
}

// syncBuffer is a bytes.Buffer the process writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a TCP port that was free a moment ago on every interface (Caddy listens on
// all of them). It is drawn from 20000–31999, below Linux's ephemeral range (32768 and up by
// default): a port the kernel hands out for ":0" can be taken by any outgoing connection (the
// browser's, an HTTP client's) between this check and Caddy's bind, and was, now and then.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[p] = true
		return p
	}
	t.Fatal("no free port between 20000 and 31999")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{} // never hand out a port twice in one run
)

// server is one running Caddy process.
type server struct {
	t         *testing.T
	cmd       *exec.Cmd
	config    string // Caddyfile path
	env       []string
	adminPort int
	httpPort  int
	log       *syncBuffer // everything every process of this server wrote
	// readyURL, when set, must answer something other than 503 before start returns: the oidc
	// app answers 503 until its store is open and its keys are ready.
	readyURL string
	// raceReported is set once a race report in log has failed the test.
	raceReported bool
}

// newServer writes the Caddyfile and prepares a process with its own data and config dirs.
func newServer(t *testing.T, caddyfile string, adminPort, httpPort int, extraEnv ...string) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir)
	return &server{t: t, config: cfg, env: append(env, extraEnv...), adminPort: adminPort, httpPort: httpPort}
}

// start runs `caddy run` and waits until the admin endpoint and the HTTP port answer.
func (s *server) start() {
	s.t.Helper()
	if s.log == nil {
		s.log = &syncBuffer{} // one log across restarts, so checks read every process's lines
	}
	s.cmd = exec.Command(caddyBin, "run", "--config", s.config, "--adapter", "caddyfile")
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(s.stop)
	deadline := time.Now().Add(20 * time.Second * slow)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(fmt.Sprintf("http://localhost:%d/config/", s.adminPort)); err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.httpPort)); err == nil {
				c.Close()
				if s.readyURL == "" {
					return
				}
				if resp, err := client().Get(s.readyURL); err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusServiceUnavailable {
						return
					}
				}
			}
		}
		if s.cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("caddy did not start:\n%s", s.log.String())
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	// a binary built with -race reports each race it sees and goes on: the test fails on it
	if out := s.log.String(); !s.raceReported && strings.Contains(out, raceReport) {
		s.raceReported = true
		i := strings.Index(out, raceReport)
		s.t.Errorf("the server hit a data race:\n%s", out[i:min(len(out), i+8000)])
	}
}

// client is an HTTP client that sends every *.localhost name to 127.0.0.1.
func client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second * slow, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var siteLabel = regexp.MustCompile(`(?m)^([a-z0-9-]+)\.example\.com \{`)

// loopback rewrites a Caddyfile written for https://*.example.com to http://*.localhost:<port>
// on this machine, with its own admin port, upstreams and storage. Nothing else changes.
func loopback(caddyfile string, adminPort, httpPort int, upstreams map[string]string, replace map[string]string) string {
	out := caddyfile
	for from, to := range replace {
		out = strings.ReplaceAll(out, from, to)
	}
	for from, to := range upstreams {
		out = strings.ReplaceAll(out, "reverse_proxy "+from, "reverse_proxy "+to)
	}
	out = regexp.MustCompile(`https://([a-z0-9-]+)\.example\.com`).ReplaceAllString(out, fmt.Sprintf("http://$1.localhost:%d", httpPort))
	out = siteLabel.ReplaceAllString(out, fmt.Sprintf("http://$1.localhost:%d {", httpPort))
	out = regexp.MustCompile(`([a-z0-9-]+)\.example\.com`).ReplaceAllString(out, "$1.localhost")
	// browsers keep no cookie for the domain "localhost": on loopback the session cookie is
	// host-only on the issuer
	out = regexp.MustCompile(`(?m)^\s*cookie_domain example\.com\n`).ReplaceAllString(out, "")
	global := fmt.Sprintf("{\n\tadmin localhost:%d\n\thttp_port %d\n\tlog {\n\t\tlevel INFO\n\t}\n", adminPort, httpPort)
	return strings.Replace(out, "{\n", global, 1)
}
