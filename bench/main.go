// Command bench measures what the gate (oidc_auth) costs: in one run against one Caddy process it
// loads a reverse-proxied site without the gate and the same upstream behind oidc_auth, in
// alternating rounds, and reports requests per second and their ratio, for each kind of
// credential the gate reads:
//
//   - Bearer tokens: with 10 live tokens, then after minting tokens through the token endpoint
//     until the store holds -tokens live ones (reporting the minting rate, and Caddy's resident
//     memory and the store's size on disk before and after), to show the check costs the same
//     with 10 and with 200,000 tokens;
//   - the portal's session cookie: with 10 live sessions, then after signing in through the
//     portal's form until -sessions live ones exist (reporting the sign-in rate, memory and store
//     before and after), with the load on one session and spread over -spread of them;
//   - Basic credentials of a user with an argon2id digest (Authelia's defaults): the first
//     request pays the digest, and the rounds measure the remembered credential after it.
//
// First (-mode tokens or all) it measures the token endpoint's client_credentials rate over TLS
// and Caddy's CPU per token, beside plain Caddy's TLS `respond` in the same process, and beside the
// release -reference names (645df47, the release before the code flow), which it builds from git
// and starts as a second Caddy on the same core: the three are loaded in turn, in alternating
// rounds, so their ratios hold under the machine's noise. -mode gate skips it; -mode tokens runs
// only it, in about a minute at the default -rounds and -duration once the reference is built
// (builds are cached by commit).
//
// Then (-mode stores or all) it measures the Badger and the PostgreSQL store side by side (-store
// badger, postgres or both): one Caddy per store with the same Caddyfile, both on core 0 and
// loaded one at a time in alternating rounds, and a throwaway PostgreSQL (Debian's binaries,
// initdb in a temporary directory, fsync on unless -pg-fsync=false) on core 1 with the upstream
// and the load generator. It reports the gate's gated/plain ratio with warm caches on each store
// and their difference, the latency of the first request with each of -cold fresh tokens (the
// gate's cache cold: one read of the store) beside the second, the token endpoint's
// client_credentials rate on each store and their ratio, and each node's memory with -tokens live
// tokens. -mode all skips it, saying so, where PostgreSQL is not installed.
//
// Both sites get the same request (the same Authorization or Cookie header), so the difference is
// the gate's work and nothing else. Each round also reports the CPU the machine's other processes
// took meanwhile; a pair of rounds they disturbed (over a tenth of a core) is measured again, up
// to -redo times, and the least disturbed pair is kept. With -cpuprofile, Caddy's CPU profile of
// every round is saved (from the admin API), named by round, phase and site.
//
//	go build -o /tmp/caddy-x ./cmd/caddy && go run ./bench -caddy /tmp/caddy-x
//	go run ./bench -caddy /tmp/caddy-x -rounds 1 -duration 2s -tokens 20000 -sessions 20000
//	go run ./bench -caddy /tmp/caddy-x -mode tokens -rounds 7
//	go run ./bench -caddy /tmp/caddy-x -mode stores -rounds 5 -duration 3s
//	go run ./bench -caddy /tmp/caddy-x -mode jwt -rounds 3 -duration 3s
//
// -mode jwt (jwtgate.go) runs alone: the gate with JWT access tokens (ES256 and RS256) beside an
// opaque token and plain Caddy, with -revoked revoked JWT access tokens in memory, and what those
// entries cost.
//
// Every request goes to 127.0.0.1; the run is bounded by -rounds and -duration.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
)

func main() {
	caddyBin := flag.String("caddy", "", "Caddy binary with Portcullis (default: build ./cmd/caddy)")
	duration := flag.Duration("duration", 5*time.Second, "length of one measuring round")
	rounds := flag.Int("rounds", 3, "rounds per site (alternating)")
	conns := flag.Int("connections", 32, "concurrent keep-alive connections")
	tokens := flag.Int("tokens", 200000, "live tokens in the store for the second Bearer phase (minted through the token endpoint)")
	sessions := flag.Int("sessions", 100000, "live sessions for the second session phase (signed in through the portal's form)")
	spread := flag.Int("spread", 1000, "sessions the spread measurement of the second session phase sends requests with, in turn")
	loader := flag.String("loader", "", "load generator: wrk (default when installed) or go")
	profile := flag.String("heapprofile", "", "write Caddy's heap profile (from the admin API) at the end to this file")
	flag.IntVar(&redo, "redo", 2, "measure a pair of rounds again, up to this many times, when other processes took more than a tenth of a core")
	flag.StringVar(&cpuProfileDir, "cpuprofile", "", "write Caddy's CPU profile (from the admin API) of every round to this directory")
	mode := flag.String("mode", "all", "phases to run: gate (the gate's cost, minting, memory), tokens (the token rate beside plain Caddy and the -reference release), stores (Badger and PostgreSQL side by side, see -store), jwt (JWT access tokens at the gate, see -revoked) or all")
	stores := flag.String("store", "both", "stores the stores phase measures side by side: badger, postgres or both (postgres needs Debian's postgresql binaries)")
	cold := flag.Int("cold", 1000, "fresh tokens whose first request the stores phase times (the gate's cache cold)")
	pgConns := flag.Int("pg-connections", 0, "storage postgres max_connections of the stores phase's PostgreSQL node (0: the store's default, 4 × GOMAXPROCS)")
	pgFsync := flag.Bool("pg-fsync", true, "run the stores phase's PostgreSQL with fsync on (a real server's default); off: as the tests run it")
	reference := flag.String("reference", "645df47", "commits of this repository (comma-separated) whose token rate the tokens phase measures beside the binary under test (built from git and cached); empty: none")
	revoked := flag.Int("revoked", 200000, "revoked JWT access tokens in the store (and the gate's memory) for -mode jwt")
	pin := flag.Bool("pin", true, "with taskset and 2+ cores: Caddy on core 0, load generator and upstream on core 1")
	flag.Parse()
	heapProfile = *profile
	if *pin && runtime.NumCPU() >= 2 {
		if _, err := exec.LookPath("taskset"); err == nil {
			pinned = true
			// this process (the upstream, and the Go load generator) and its threads go to core 1
			if out, err := exec.Command("taskset", "-a", "-cp", "1", strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
				log.Fatalf("taskset: %v %s", err, out)
			}
		}
	}
	if *loader == "" {
		*loader = "go"
		if _, err := exec.LookPath("wrk"); err == nil {
			*loader = "wrk"
		}
	}
	useWrk = *loader == "wrk"
	if cpuProfileDir != "" {
		if err := os.MkdirAll(cpuProfileDir, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	if *tokens < 10 || *sessions < 10 || *spread < 1 {
		log.Fatal("-tokens and -sessions must be at least 10, -spread at least 1")
	}
	if *mode != "all" && *mode != "gate" && *mode != "tokens" && *mode != "stores" && *mode != "jwt" {
		log.Fatal("-mode is gate, tokens, stores, jwt or all")
	}
	if *stores != "badger" && *stores != "postgres" && *stores != "both" {
		log.Fatal("-store is badger, postgres or both")
	}
	if *cold < 1 {
		log.Fatal("-cold must be at least 1")
	}
	if *caddyBin == "" {
		dir, err := os.MkdirTemp("", "portcullis-bench-build")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*caddyBin = filepath.Join(dir, "caddy")
		b := exec.Command("go", "build", "-o", *caddyBin, "./cmd/caddy")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			log.Fatalf("building caddy: %v", err)
		}
	}
	if *mode == "jwt" {
		if err := jwtGate(*caddyBin, *duration, *rounds, *conns, *revoked); err != nil {
			log.Fatal(fmt.Errorf("jwt: %w", err))
		}
		return
	}
	if *mode != "stores" {
		if err := run(*caddyBin, *mode, *reference, *duration, *rounds, *conns, *tokens, *sessions, min(*spread, *sessions)); err != nil {
			log.Fatal(err)
		}
	}
	if *mode == "stores" || *mode == "all" {
		if *stores != "badger" {
			if _, err := pgtest.BinDir(); err != nil {
				if *mode == "all" {
					fmt.Printf("\n(stores phase skipped: %v)\n", err)
					return
				}
				log.Fatal(err)
			}
		}
		if err := storesPhase(*caddyBin, *stores, *duration, *rounds, *conns, *tokens, *cold, *pgConns, *pgFsync); err != nil {
			log.Fatal(fmt.Errorf("stores: %w", err))
		}
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const digest = "$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng"

// The people of the users file, with argon2id digests at Authelia's defaults (t=3, m=64 MiB, p=4;
// made with `caddy oidc hash --algorithm argon2id`): john signs in at the portal for the session
// phases, script sends Basic credentials.
const (
	sessionUser     = "john"
	sessionPassword = "john-bench-password"
	basicUser       = "script"
	basicPassword   = "script-bench-password"
	usersFile       = `users:
  john:
    displayname: John
    password: "$argon2id$v=19$m=65536,t=3,p=4$+e+41B/ZtUbAqiKbL0a9gg$ynRfXkchm0E0asEgd8fJxqjITiBA8T/Sx/KwcxH6id0"
    groups: [dev]
  script:
    displayname: Script
    password: "$argon2id$v=19$m=65536,t=3,p=4$lykdatU9iCXtYoIIosEVhw$LMT34H0r2ShTA/MUPH9WpMEbKfDmxtEy31ifnu+l1ng"
    groups: [dev]
`
)

func config(admin, port int, upstream, dir, users string) string {
	return fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	log {
		level ERROR
	}
	oidc {
		issuer http://auth.localhost:%[2]d
		storage %[4]s
		users_file %[6]s
		# security keys are not measured, and WebAuthn takes an http origin on localhost only
		webauthn {
			disable
		}
		client monitor {
			secret "%[5]s"
			scopes authelia.bearer.authz
			audience http://gated.localhost:%[2]d/
			grant_types client_credentials
			requested_audience_mode implicit
		}
		access_control {
			default_policy deny
			rule {
				domain gated.localhost
				subject oauth2:client:monitor
				subject group:dev
				policy one_factor
			}
		}
	}
}
http://auth.localhost:%[2]d {
	oidc_provider
}
http://plain.localhost:%[2]d {
	reverse_proxy %[3]s
}
http://noop.localhost:%[2]d {
	vars portcullis_bench noop
	reverse_proxy %[3]s
}
http://gated.localhost:%[2]d {
	oidc_auth
	reverse_proxy %[3]s
}
`, admin, port, upstream, dir, digest, users)
}

func run(caddyBin, mode, reference string, duration time.Duration, rounds, conns, nTokens, nSessions, spread int) error {
	work, err := os.MkdirTemp("", "portcullis-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	scratch = work
	if mode != "gate" {
		if err := tokenRate(work, caddyBin, reference, duration, rounds, conns); err != nil {
			return fmt.Errorf("token rate: %w", err)
		}
		if mode == "tokens" {
			return nil
		}
	}

	upstream, usersPath, err := startUpstream(work)
	if err != nil {
		return err
	}
	defer upstream.Close()
	hc := loopbackClient(conns)
	storeDir := filepath.Join(work, "store")
	caddy, err := startCaddy(hc, caddyBin, work, func(admin, port int) string {
		return config(admin, port, upstream.Addr().String(), storeDir, usersPath)
	}, func(port int) string { return fmt.Sprintf("http://plain.localhost:%d/", port) })
	if err != nil {
		return err
	}
	defer caddy.stop()
	admin, port, pid := caddy.admin, caddy.port, caddy.pid
	base := func(h string) string { return fmt.Sprintf("http://%s.localhost:%d", h, port) }
	mint := func() (string, error) {
		for attempt := 0; ; attempt++ {
			tok, retry, err := mintOnce(hc, base("auth"))
			if !retry || attempt == 50 {
				return tok, err
			}
			time.Sleep(100 * time.Millisecond) // 503 while the oidc app starts: Retry-After
		}
	}
	token, err := mint()
	if err != nil {
		return err
	}
	for i := 1; i < 10; i++ {
		if _, err := mint(); err != nil {
			return err
		}
	}
	fmt.Printf("portcullis bench: %d connections, %d rounds of %s per site, alternating\n", conns, rounds, duration)
	if pinned {
		fmt.Printf("Caddy pinned to core 0; load generator and upstream to core 1 (of %d)\n\n", runtime.NumCPU())
	} else {
		fmt.Printf("Caddy, the load generator and the upstream share this machine's %d cores\n\n", runtime.NumCPU())
	}

	var profiles sync.WaitGroup
	defer profiles.Wait()
	round := 0
	// measure loads host for one round; phase names the round's CPU profile (-cpuprofile).
	measure := func(phase, host string, h headers) sample {
		round++
		if cpuProfileDir != "" {
			profiles.Add(1)
			go func(name string) {
				defer profiles.Done()
				saveCPUProfile(admin, duration, filepath.Join(cpuProfileDir, name))
			}(fmt.Sprintf("%03d-%s-%s.pprof", round, phase, host))
		}
		cpu0, busy0, own0, start := processCPU(pid), machineBusy(), ownCPU(), time.Now()
		var rate float64
		if useWrk {
			rate = wrk(port, fmt.Sprintf("%s.localhost:%d", host, port), h, conns, duration)
		} else {
			rate = load(hc, base(host)+"/", h, conns, duration)
		}
		cpu := processCPU(pid) - cpu0
		others := machineBusy() - busy0 - cpu - (ownCPU() - own0)
		return sample{rate: rate, cpuPerReq: cpu.Seconds() * 1e6 / (rate * duration.Seconds()), others: max(0, others.Seconds()/time.Since(start).Seconds())}
	}
	// pair measures the plain and the gated site with the same request, Authorization or Cookie
	// header included, so the difference is the gate's work and nothing else.
	pair := func(phase string, h headers) (plain, gated []sample) {
		return alternate(rounds, func() sample { return measure(phase, "plain", h) }, func() sample { return measure(phase, "gated", h) })
	}
	bearer := headers{fixed: []string{"Authorization: Bearer " + token}}
	fmt.Printf("load generator: %s\n", map[bool]string{true: "wrk (1 thread)", false: "Go, in this process"}[useWrk])

	// Calibration: what one more no-op handler (vars) costs in Caddy's chain, measured the same way.
	plainC, noopC := alternate(rounds, func() sample { return measure("calibration", "plain", bearer) }, func() sample { return measure("calibration", "noop", bearer) })
	report("calibration: one no-op handler (vars) before reverse_proxy", "vars + proxy", plainC, noopC)
	var results []result

	fmt.Printf("\n== Bearer tokens ==\n")
	plain10, gated10 := pair("bearer-10", bearer)
	results = append(results, report("10 live tokens", "oidc_auth + proxy", plain10, gated10))

	// Sessions: john signs in at the portal; the first sign-in pays the argon2id digest, the
	// others find the password remembered. The first goes alone: until a right password is
	// remembered, every attempt counts towards regulation when it begins, so a few sign-ins of one
	// user from one address at once would ban the pair (max_retries, 3 by default).
	fmt.Printf("\n== portal sessions (cookie) ==\n")
	auth := base("auth")
	start := time.Now()
	first, err := signInOnce(auth)
	if err != nil {
		return err
	}
	fmt.Printf("first sign-in (argon2id digest): %s\n", time.Since(start).Round(time.Millisecond))
	cookies := []string{first}
	more, _, err := signInMany(auth, 9, 1)
	if err != nil {
		return err
	}
	cookies = append(cookies, more...)
	one := headers{cookies: cookies[:1]}
	plainS10, gatedS10 := pair("session-10-one", one)
	results = append(results, report("10 live sessions, every request with the same session", "oidc_auth + proxy", plainS10, gatedS10))
	spread10 := headers{cookies: cookies}
	plainSS10, gatedSS10 := pair("session-10-spread", spread10)
	results = append(results, report("10 live sessions, requests spread over all 10", "oidc_auth + proxy", plainSS10, gatedSS10))

	// Basic: script's first request pays the argon2id digest, later ones find it remembered (it
	// goes alone, as the first sign-in does).
	fmt.Printf("\n== Basic credentials (argon2id) ==\n")
	basicHeader := "Basic " + base64.StdEncoding.EncodeToString([]byte(basicUser+":"+basicPassword))
	for _, what := range []string{"first request (pays the digest)", "second request (remembered)"} {
		took, err := timedGet(hc, base("gated")+"/", "Authorization", basicHeader)
		if err != nil {
			return fmt.Errorf("basic, %s: %w", what, err)
		}
		fmt.Printf("%s: %s\n", what, took.Round(time.Microsecond))
	}
	plainB, gatedB := pair("basic", headers{fixed: []string{"Authorization: " + basicHeader}})
	results = append(results, report("Basic credentials, after the first request", "oidc_auth + proxy", plainB, gatedB))

	fmt.Printf("\n== Bearer tokens: minting tokens up to %d live ones ==\n", nTokens)
	// the phases before leave garbage (the argon2id digests' 64 MiB among it) that the Go
	// runtime returns to the system gradually: collect it and let it go before the baseline
	goHeapInUse(admin, true)
	time.Sleep(settle)
	memory("before minting", pid, admin, storeDir)
	start = time.Now()
	if err := mintMany(nTokens-10, conns, mint); err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Printf("minted %d tokens in %s: %.0f tokens/s\n", nTokens-10, took.Round(time.Millisecond), float64(nTokens-10)/took.Seconds())
	memory("after minting", pid, admin, storeDir)
	// Badger goes on compacting for a few seconds after a burst, and hands back one of its
	// table-building buffers every two idle seconds; the Go runtime returns freed pages gradually.
	time.Sleep(settle)
	memory(fmt.Sprintf("%s after minting", settle), pid, admin, storeDir)
	if heapProfile != "" {
		if err := saveHeapProfile(admin, heapProfile+".after-minting"); err != nil {
			return err
		}
	}
	fmt.Println()
	plainN, gatedN := pair("bearer-many", bearer)
	results = append(results, report(fmt.Sprintf("%d live tokens", nTokens), "oidc_auth + proxy", plainN, gatedN))

	fmt.Printf("\n== portal sessions: signing in up to %d live ones ==\n", nSessions)
	memory("before signing in", pid, admin, storeDir)
	start = time.Now()
	more, browsers, err := signInMany(auth, nSessions-10, conns)
	if err != nil {
		return err
	}
	took = time.Since(start)
	cookies = append(cookies, more...)
	fmt.Printf("signed in %d sessions in %s: %.0f sign-ins/s (%d browsers at once, each fetching the form once and posting it for every session)\n",
		nSessions-10, took.Round(time.Millisecond), float64(nSessions-10)/took.Seconds(), browsers)
	memory("after signing in", pid, admin, storeDir)
	fmt.Println()
	plainSN, gatedSN := pair("session-many-one", one)
	results = append(results, report(fmt.Sprintf("%d live sessions, every request with the same session (as with 10)", nSessions), "oidc_auth + proxy", plainSN, gatedSN))
	// the spread: sessions evenly through the creation order, the first (used above) included
	picked := make([]string, spread)
	for i := range picked {
		picked[i] = cookies[i*len(cookies)/spread]
	}
	plainSSN, gatedSSN := pair("session-many-spread", headers{cookies: picked})
	results = append(results, report(fmt.Sprintf("%d live sessions, requests spread over %d of them", nSessions, spread), "oidc_auth + proxy", plainSSN, gatedSSN))
	memory("after the session rounds", pid, admin, storeDir)

	// The phases run minutes apart, and a shared machine drifts more than the gate costs, so
	// the robust comparison is the gate's paired cost within each phase.
	fmt.Printf("\n== flat? ==\n")
	fmt.Printf("Bearer: gate's paired throughput ratio with %d tokens / with 10 tokens: %.3f\n", nTokens, pairedRatio(plainN, gatedN)/pairedRatio(plain10, gated10))
	fmt.Printf("Bearer: gated throughput with %d tokens / with 10 tokens (phases minutes apart): %.3f\n", nTokens, median(rates(gatedN))/median(rates(gated10)))
	fmt.Printf("session: gate's paired throughput ratio with %d sessions / with 10 sessions, one session: %.3f\n", nSessions, pairedRatio(plainSN, gatedSN)/pairedRatio(plainS10, gatedS10))
	fmt.Printf("session: gate's paired throughput ratio with %d sessions spread over %d / with 10 spread over 10: %.3f\n", nSessions, spread, pairedRatio(plainSSN, gatedSSN)/pairedRatio(plainSS10, gatedSS10))
	fmt.Printf("session: gated throughput with %d sessions / with 10 sessions, one session (phases minutes apart): %.3f\n", nSessions, median(rates(gatedSN))/median(rates(gatedS10)))

	fmt.Printf("\n== summary, medians of %d paired rounds ==\n", rounds)
	fmt.Printf("  %-72s %10s %10s %8s\n", "", "throughput", "CPU cost", "others")
	fmt.Printf("  %-72s %10s %10s %8s\n", "", "with/out", "out/with", "(cores)")
	for _, r := range results {
		fmt.Printf("  %-72s %10.3f %10.3f %8.2f%s\n", r.title, r.ratio, r.cpuRatio, r.others, disturbed(r.others))
	}
	memory("\nat the end", pid, admin, storeDir)
	if heapProfile != "" {
		if err := saveHeapProfile(admin, heapProfile); err != nil {
			return err
		}
	}
	return nil
}

// memory prints Caddy's resident memory (VmRSS, split into anonymous and file-backed pages, and
// its peak VmHWM, from /proc/<pid>/status), the Go heap in use (from the admin API's metrics), and
// the store's size on disk: the sum of the file sizes under dir, and the blocks they occupy
// (Badger preallocates its memtable logs and value-log files sparsely, so the two differ).
func memory(when string, pid, admin int, dir string) {
	const mib = 1 << 20
	size, used := dirSize(dir)
	rss := procStatus(pid, "VmRSS")
	fmt.Printf("%s: Caddy RSS %.1f MiB (anon %.1f, file %.1f, peak %.1f), Go heap in use %.1f MiB (live after a GC %.1f); store %.1f MiB in files, %.1f MiB on disk\n",
		when, float64(rss)/mib, float64(procStatus(pid, "RssAnon"))/mib,
		float64(procStatus(pid, "RssFile")+procStatus(pid, "RssShmem"))/mib, float64(procStatus(pid, "VmHWM"))/mib,
		goHeapInUse(admin, false)/mib, goHeapInUse(admin, true)/mib, float64(size)/mib, float64(used)/mib)
}

// settle is how long the bench waits after minting before reading memory again.
const settle = 20 * time.Second

// heapProfile is where -heapprofile asks the heap profile to go (and, with the suffix
// .after-minting, the one taken once minting has settled).
var heapProfile string

// saveHeapProfile writes Caddy's heap profile from the admin API's pprof endpoint to path.
func saveHeapProfile(admin int, path string) error {
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/debug/pprof/heap", admin))
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return os.WriteFile(path, data, 0o644)
}

var heapInUse = regexp.MustCompile(`(?m)^go_memstats_heap_inuse_bytes ([0-9.e+]+)$`)

// goHeapInUse reads go_memstats_heap_inuse_bytes from Caddy's admin /metrics, or returns 0.
// With gc it first has Caddy collect garbage (the pprof heap endpoint's gc=1), so the figure is
// the live heap rather than whatever garbage the pacer let accumulate.
func goHeapInUse(admin int, gc bool) float64 {
	if gc {
		if resp, err := http.Get(fmt.Sprintf("http://localhost:%d/debug/pprof/heap?gc=1", admin)); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", admin))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	m := heapInUse.FindSubmatch(data)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// procStatus returns a "kB" field of /proc/<pid>/status in bytes, or 0.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// dirSize sums the sizes of the regular files under dir, and the disk blocks they occupy.
func dirSize(dir string) (size, used int64) {
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		size += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			used += st.Blocks * 512
		}
		return nil
	})
	return size, used
}

var useWrk, pinned bool

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// headers is what every request of a measuring round carries: fixed header lines, and, when
// cookies is set, a Cookie header that takes each of those values in turn, so the load is spread
// over those sessions (one value: every request carries the same session).
type headers struct {
	fixed   []string // "Name: value"
	cookies []string // session ids: "Cookie: portcullis_session=<id>", one after another
}

// sessionCookie is the portal's session cookie name (the default).
const sessionCookie = "portcullis_session"

// scratch is the run's temporary directory (for wrk's scripts).
var scratch string

// wrkScript has each wrk connection send the next of the session cookies (Lua's table
// cookies, defined before it), on top of the -H headers: requests are formatted once, in init.
const wrkScript = `
local reqs = {}
function init(args)
	for i, c in ipairs(cookies) do
		local h = {}
		for k, v in pairs(wrk.headers) do h[k] = v end
		h["Cookie"] = "` + sessionCookie + `=" .. c
		reqs[i] = wrk.format(nil, nil, h)
	end
end
local n = 0
function request()
	n = n % #reqs + 1
	return reqs[n]
end
`

// wrk runs wrk against 127.0.0.1:port with the given Host header and returns requests per
// second; any non-2xx answer is fatal.
func wrk(port int, host string, h headers, conns int, d time.Duration) float64 {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "-H", "Host: " + host}
	for _, f := range h.fixed {
		args = append(args, "-H", f)
	}
	switch len(h.cookies) {
	case 0:
	case 1:
		args = append(args, "-H", "Cookie: "+sessionCookie+"="+h.cookies[0])
	default:
		var b strings.Builder
		b.WriteString("cookies = {\n")
		for _, c := range h.cookies {
			fmt.Fprintf(&b, "%q,\n", c)
		}
		b.WriteString("}\n" + wrkScript)
		path := filepath.Join(scratch, "cookies.lua")
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			log.Fatal(err)
		}
		args = append(args, "-s", path)
	}
	args = append(args, fmt.Sprintf("http://127.0.0.1:%d/", port))
	name := "wrk"
	if pinned {
		name, args = "taskset", append([]string{"-c", "1", "wrk"}, args...)
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		fatalf("wrk: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "Non-2xx") {
		fatalf("wrk saw failed requests for %s:\n%s", host, out)
	}
	m := wrkRate.FindSubmatch(out)
	if m == nil {
		fatalf("wrk output without a rate:\n%s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// mintOnce asks the token endpoint for a token; retry is true on 503.
func mintOnce(hc *http.Client, auth string) (token string, retry bool, err error) {
	req, _ := http.NewRequest("POST", auth+"/api/oidc/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("monitor", "insecure_secret")
	resp, err := hc.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return "", true, fmt.Errorf("token endpoint answered 503")
	}
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil || t.AccessToken == "" {
		return "", false, fmt.Errorf("token endpoint answered %d", resp.StatusCode)
	}
	return t.AccessToken, false, nil
}

func loopbackClient(conns int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, p, _ := net.SplitHostPort(addr)
			return d.DialContext(ctx, network, "127.0.0.1:"+p)
		},
	}, Timeout: 10 * time.Second}
}

// cleanups are what fatalf undoes before exiting: the Caddy processes and the PostgreSQL server
// the bench started, which would outlive it. Each must be safe to call again.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// atFatal registers f for fatalf.
func atFatal(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, f)
}

// fatalf logs, stops what the bench started (latest first) and exits with status 1.
func fatalf(format string, args ...any) {
	log.Printf(format, args...)
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	os.Exit(1)
}

// errExited is a Caddy that exited before it answered.
var errExited = errors.New("caddy exited at start")

// waitUp waits until u answers, or Caddy exits (exited closes), or 20 seconds pass.
func waitUp(hc *http.Client, u string, exited <-chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errExited
		default:
		}
		if resp, err := hc.Get(u); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("caddy did not come up")
}

// load sends GETs on conns connections for d and returns requests per second; every answer must
// be 200.
func load(hc *http.Client, u string, h headers, conns int, d time.Duration) float64 {
	var n, bad, next atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", u, nil)
			for _, f := range h.fixed {
				k, v, _ := strings.Cut(f, ":")
				req.Header.Set(k, strings.TrimSpace(v))
			}
			for time.Now().Before(deadline) {
				if len(h.cookies) > 0 {
					req.Header.Set("Cookie", sessionCookie+"="+h.cookies[int(next.Add(1)-1)%len(h.cookies)])
				}
				resp, err := hc.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		fatalf("%s: %d failed requests", u, bad.Load())
	}
	return float64(n.Load()) / d.Seconds()
}

// timedGet sends one GET with one header and returns how long the answer took; it must be 200.
func timedGet(hc *http.Client, u, header, value string) (time.Duration, error) {
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set(header, value)
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s answered %d", u, resp.StatusCode)
	}
	return took, nil
}

// sample is one measuring round: requests per second, and Caddy's CPU time per request (µs).
type sample struct {
	rate, cpuPerReq float64
	// others is the CPU the machine's other processes (neither Caddy nor this process and its
	// load generator) used during the round, in cores: a round they took much from is suspect.
	others float64
	// dbPerReq is the CPU time PostgreSQL's processes took per request (µs), in the stores phase.
	dbPerReq float64
}

func rates(s []sample) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = x.rate
	}
	return out
}

func cpus(s []sample) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = x.cpuPerReq
	}
	return out
}

// processCPU is the CPU time all threads of pid have used, from /proc/<pid>/task/*/schedstat.
func processCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var total int64
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(data))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			total += n
		}
	}
	return time.Duration(total)
}

// alternate measures a then b, rounds times, as alternateN does.
func alternate(rounds int, a, b func() sample) (as, bs []sample) {
	s := alternateN(rounds, a, b)
	return s[0], s[1]
}

// redo is how many times a disturbed pair of rounds is measured again (-redo).
var redo int

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// pairedRatio is the median over rounds of gated/plain throughput.
func pairedRatio(plainS, gatedS []sample) float64 {
	r := make([]float64, len(plainS))
	for i := range plainS {
		r[i] = gatedS[i].rate / plainS[i].rate
	}
	return median(r)
}

// result is one comparison's title and its paired throughput ratio, for the summary.
type result struct {
	title           string
	ratio, cpuRatio float64
	others          float64 // the most other processes took during a round, in cores
}

func report(title, label string, plainS, gatedS []sample) result {
	plain, gated := rates(plainS), rates(gatedS)
	fmt.Printf("%s\n", title)
	fmt.Printf("  %-20s: %s req/s (median %.0f), Caddy CPU %.1f µs/request\n", "plain reverse_proxy", fmtAll(plain), median(plain), median(cpus(plainS)))
	fmt.Printf("  %-20s: %s req/s (median %.0f), Caddy CPU %.1f µs/request\n", label, fmtAll(gated), median(gated), median(cpus(gatedS)))
	ratios := make([]float64, len(plain))
	cpuRatios := make([]float64, len(plain))
	for i := range plain {
		ratios[i] = gated[i] / plain[i]
		cpuRatios[i] = plainS[i].cpuPerReq / gatedS[i].cpuPerReq
	}
	fmt.Printf("  with / without throughput : %.3f (median of %d paired rounds; ratio of medians %.3f)\n", median(ratios), len(ratios), median(gated)/median(plain))
	fmt.Printf("  without / with CPU cost   : %.3f (median of paired rounds: the throughput ratio a CPU-bound Caddy would see)\n", median(cpuRatios))
	others := make([]string, len(plain))
	worst := 0.0
	for i := range plain {
		others[i] = fmt.Sprintf("%.2f/%.2f", plainS[i].others, gatedS[i].others)
		worst = max(worst, plainS[i].others, gatedS[i].others)
	}
	fmt.Printf("  other processes' CPU      : %s cores (plain/gated, per round)%s\n", strings.Join(others, ", "), disturbed(worst))
	return result{title: title, ratio: median(ratios), cpuRatio: median(cpuRatios), others: worst}
}

// disturbed warns when other processes took more than a tenth of a core during a round.
func disturbed(worst float64) string {
	if worst > 0.1 {
		return " — DISTURBED: the machine was busy with other work"
	}
	return ""
}

// machineBusy is the CPU time the whole machine's processes have spent (user, nice and system,
// from /proc/stat: not interrupts, whose time the loopback traffic itself causes).
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	var ticks int64
	for _, v := range f[1:min(4, len(f))] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// ownCPU is the CPU time of this process (the upstream, the Go loader) and of its ended children
// (each wrk run).
func ownCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// cpuProfileDir is where -cpuprofile asks each round's CPU profile of Caddy to go.
var cpuProfileDir string

// saveCPUProfile writes Caddy's CPU profile over most of a round (from the admin API) to path.
func saveCPUProfile(admin int, d time.Duration, path string) {
	secs := max(1, int(d.Seconds())-1)
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/debug/pprof/profile?seconds=%d", admin, secs))
	if err != nil {
		log.Printf("cpu profile: %v", err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		log.Printf("cpu profile %s: %v (status %d: %s)", filepath.Base(path), err, resp.StatusCode, bytes.TrimSpace(data))
		return
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		log.Printf("cpu profile: %v", err)
	}
}

func fmtAll(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}

func mintMany(n, conns int, mint func() (string, error)) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := mint(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// browser is one browser at the portal: it fetched the sign-in page once, for the CSRF cookie and
// the form's token, and posts the form for every sign-in, each starting a new session (it never
// sends a session cookie back, so no sign-in ends the one before).
type browser struct {
	hc               *http.Client
	issuer           string
	csrfCookie, csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// portalClient follows no redirects: a sign-in's answer is the 303 that sets the cookie.
func portalClient(conns int) *http.Client {
	hc := loopbackClient(conns)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return hc
}

// newBrowser fetches the sign-in page.
func newBrowser(hc *http.Client, issuer string) (*browser, error) {
	for attempt := 0; ; attempt++ {
		resp, err := hc.Get(issuer + "/")
		if err != nil {
			return nil, err
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && attempt < 50 {
			time.Sleep(100 * time.Millisecond) // the oidc app is starting
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("sign-in page answered %d", resp.StatusCode)
		}
		b := &browser{hc: hc, issuer: issuer}
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookie+"_csrf" {
				b.csrfCookie = c.Value
			}
		}
		m := csrfField.FindSubmatch(page)
		if b.csrfCookie == "" || m == nil {
			return nil, fmt.Errorf("sign-in page without its CSRF cookie or token")
		}
		b.csrf = string(m[1])
		return b, nil
	}
}

// signIn posts the form as john (with remember-me, so inactivity ends no session however long
// the run) and returns the new session's id.
func (b *browser) signIn() (string, error) {
	form := url.Values{"csrf": {b.csrf}, "username": {sessionUser}, "password": {sessionPassword}, "remember_me": {"1"}}
	req, _ := http.NewRequest("POST", b.issuer+"/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: sessionCookie + "_csrf", Value: b.csrfCookie})
	resp, err := b.hc.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("sign-in answered %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && len(c.Value) == 43 {
			return c.Value, nil
		}
	}
	return "", fmt.Errorf("sign-in answered 303 without a session cookie")
}

// signInOnce signs in one browser once.
func signInOnce(issuer string) (string, error) {
	b, err := newBrowser(portalClient(1), issuer)
	if err != nil {
		return "", err
	}
	return b.signIn()
}

// signInMany signs in n sessions with up to conns browsers at once and returns their ids, and how
// many browsers there were.
func signInMany(issuer string, n, conns int) ([]string, int, error) {
	conns = max(1, min(conns, n))
	hc := portalClient(conns)
	ids := make([]string, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := newBrowser(hc, issuer)
			if err != nil {
				once.Do(func() { firstErr = err })
				return
			}
			for {
				j := next.Add(1) - 1
				if j >= int64(n) {
					return
				}
				if ids[j], err = b.signIn(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return ids, conns, firstErr
}

// startUpstream serves the bench's upstream (a small fixed answer, in this process) and writes
// the users file into work; the caller closes the listener.
func startUpstream(work string) (upstream net.Listener, usersPath string, err error) {
	usersPath = filepath.Join(work, "users.yml")
	if err := os.WriteFile(usersPath, []byte(usersFile), 0o600); err != nil {
		return nil, "", err
	}
	upstream, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	body := bytes.Repeat([]byte("x"), 256)
	go func() {
		_ = http.Serve(upstream, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	}()
	return upstream, usersPath, nil
}
