package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/portcullis-auth/portcullis/internal/pgtest"
)

// node is one Caddy of the stores phase: the gate bench's Caddyfile on one store.
type node struct {
	name   string // "badger" or "postgres"
	c      *caddyProc
	hc     *http.Client
	dir    string // Badger's directory (empty for PostgreSQL)
	minted atomic.Int64
}

func (n *node) base(host string) string {
	return fmt.Sprintf("http://%s.localhost:%d", host, n.c.port)
}

// mint asks n's token endpoint for a client_credentials token, waiting out the 503s of a
// starting provider.
func (n *node) mint() (string, error) {
	for attempt := 0; ; attempt++ {
		tok, retry, err := mintOnce(n.hc, n.base("auth"))
		if err == nil {
			n.minted.Add(1)
		}
		if !retry || attempt == 50 {
			return tok, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// storesPhase measures the Badger store and the PostgreSQL store side by side in one run (which:
// badger, postgres or both): one Caddy per store, each with the gate bench's Caddyfile and its
// own store, both on core 0 and loaded one at a time in alternating rounds, and PostgreSQL on
// core 1 with the upstream and the load generator. It reports the gate's gated/plain throughput
// ratio with warm caches on each store, the latency of a token's first request on the node (the
// gate's cache cold: one read of the store) beside a warm one, the token endpoint's
// client_credentials rate on each store, and each node's memory with nTokens live tokens.
func storesPhase(caddyBin, which string, duration time.Duration, rounds, conns, nTokens, nCold, pgConns int, fsync bool) error {
	work, err := os.MkdirTemp("", "portcullis-bench-stores")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	scratch = work

	ul, usersPath, err := startUpstream(work)
	if err != nil {
		return err
	}
	defer ul.Close()

	fmt.Printf("\n== stores: %s, one Caddy each, %d connections, %d rounds of %s, alternating ==\n", which, conns, rounds, duration)
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.c.stop()
		}
	}()
	var pg *pgtest.Server
	var dsn string
	if which != "postgres" {
		n := &node{name: "badger", hc: loopbackClient(conns), dir: filepath.Join(work, "badger", "store")}
		if err := os.MkdirAll(filepath.Dir(n.dir), 0o700); err != nil {
			return err
		}
		n.c, err = startCaddy(n.hc, caddyBin, filepath.Dir(n.dir), func(admin, port int) string {
			return config(admin, port, ul.Addr().String(), n.dir, usersPath)
		}, func(port int) string { return fmt.Sprintf("http://plain.localhost:%d/", port) })
		if err != nil {
			return fmt.Errorf("badger node: %w", err)
		}
		nodes = append(nodes, n)
	}
	if which != "badger" {
		// started from this process, PostgreSQL inherits its CPU affinity: core 1 when pinned
		if pg, err = pgtest.Launch(); err != nil {
			return fmt.Errorf("starting PostgreSQL: %w", err)
		}
		defer pg.Close()
		atFatal(pg.Close)
		if dsn, err = pg.NewDatabase(); err != nil {
			return err
		}
		if fsync {
			if err := pgExec(pg.DSN("postgres"), "ALTER SYSTEM SET fsync = on", "SELECT pg_reload_conf()"); err != nil {
				return err
			}
		}
		fmt.Printf("PostgreSQL %s on 127.0.0.1 (TCP, password), fsync %s, shared_buffers 32MB, server processes on %s; Caddy's pool: %s\n",
			pgVersion(dsn), map[bool]string{true: "on", false: "off"}[fsync], pgAffinity(pg.Dir), poolSize(pgConns))
		n := &node{name: "postgres", hc: loopbackClient(conns)}
		dir := filepath.Join(work, "postgres")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		pool := ""
		if pgConns > 0 {
			pool = fmt.Sprintf("\n\t\t\tmax_connections %d", pgConns)
		}
		storage := fmt.Sprintf("postgres {\n\t\t\tdsn %q%s\n\t\t}", dsn, pool)
		n.c, err = startCaddy(n.hc, caddyBin, dir, func(admin, port int) string {
			return config(admin, port, ul.Addr().String(), storage, usersPath)
		}, func(port int) string { return fmt.Sprintf("http://plain.localhost:%d/", port) })
		if err != nil {
			return fmt.Errorf("postgres node: %w", err)
		}
		nodes = append(nodes, n)
	}
	if pinned {
		fmt.Printf("each Caddy pinned to core 0 (one loaded at a time); load generator, upstream and PostgreSQL on core 1 (of %d)\n", runtime.NumCPU())
	}
	fmt.Printf("load generator: %s\n", map[bool]string{true: "wrk (1 thread)", false: "Go, in this process"}[useWrk])

	tokens := make([]string, len(nodes))
	for i, n := range nodes {
		if tokens[i], err = n.mint(); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		// the first gated request puts the token in the gate's cache
		if _, err := timedGet(n.hc, n.base("gated")+"/", "Authorization", "Bearer "+tokens[i]); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
	}

	var profiles sync.WaitGroup
	defer profiles.Wait()
	round := 0
	measure := func(n *node, phase, host string, h headers, run func() float64) sample {
		round++
		if cpuProfileDir != "" {
			profiles.Add(1)
			go func(name string) {
				defer profiles.Done()
				saveCPUProfile(n.c.admin, duration, filepath.Join(cpuProfileDir, name))
			}(fmt.Sprintf("%03d-stores-%s-%s-%s.pprof", round, phase, n.name, host))
		}
		cpu0, busy0, own0, db0, start := processCPU(n.c.pid), machineBusy(), ownCPU(), pgCPU(pg), time.Now()
		var rate float64
		switch {
		case run != nil:
			rate = run()
		case useWrk:
			rate = wrk(n.c.port, fmt.Sprintf("%s.localhost:%d", host, n.c.port), h, conns, duration)
		default:
			rate = load(n.hc, n.base(host)+"/", h, conns, duration)
		}
		cpu, db := processCPU(n.c.pid)-cpu0, pgCPU(pg)-db0
		// PostgreSQL's processes answer the node under load: their CPU is part of the work
		// measured, not a disturbance
		others := machineBusy() - busy0 - cpu - (ownCPU() - own0) - db
		reqs := rate * duration.Seconds()
		return sample{rate: rate, cpuPerReq: cpu.Seconds() * 1e6 / reqs, dbPerReq: db.Seconds() * 1e6 / reqs, others: max(0, others.Seconds()/time.Since(start).Seconds())}
	}

	// gate rounds: plain then gated on each node, the nodes in turn
	gateRounds := func(phase string) [][]sample {
		var fns []func() sample
		for i, n := range nodes {
			h := headers{fixed: []string{"Authorization: Bearer " + tokens[i]}}
			fns = append(fns,
				func() sample { return measure(n, phase, "plain", h, nil) },
				func() sample { return measure(n, phase, "gated", h, nil) })
		}
		return alternateN(rounds, fns...)
	}
	gateReport := func(title string, got [][]sample, reads float64) {
		ratios := make([][]float64, len(nodes))
		for i, n := range nodes {
			report(fmt.Sprintf("%s, %s", title, n.name), "oidc_auth + proxy", got[2*i], got[2*i+1])
			for k := range got[2*i] {
				ratios[i] = append(ratios[i], got[2*i+1][k].rate/got[2*i][k].rate)
			}
		}
		if len(nodes) == 2 {
			d := make([]float64, len(ratios[0]))
			for k := range d {
				d[k] = ratios[1][k] - ratios[0][k]
			}
			fmt.Printf("  gated/plain on postgres − on badger: %+.3f (median of %d paired rounds; per round %s; goal: within 0.02)\n",
				median(d), len(d), fmtSigned(d))
		}
		if reads >= 0 {
			fmt.Printf("  store reads by the postgres node during these rounds (all statements of the gated ones included): %.0f\n", reads)
		}
	}
	// warmRounds measures the gate rounds and counts the postgres node's reads meanwhile
	warmRounds := func(title, phase string) {
		var pgNode *node
		for _, n := range nodes {
			if n.dir == "" {
				pgNode = n
			}
		}
		before := 0.0
		if pgNode != nil {
			before, _ = storeOps(pgNode, "get")
		}
		got := gateRounds(phase)
		reads := -1.0
		if pgNode != nil {
			after, _ := storeOps(pgNode, "get")
			reads = after - before
		}
		gateReport(title, got, reads)
	}
	fmt.Printf("\n-- gate, warm caches (one live token per node, already checked once) --\n")
	warmRounds("Bearer, warm cache", "gate-warm")

	// cold cache: the first request with each of nCold fresh tokens, one at a time, then the
	// second request with each
	fmt.Printf("\n-- gate, cold cache: the first request with each of %d fresh tokens on the node that minted them (the token endpoint does not fill the gate's cache), one request at a time, beside the second request with each --\n", nCold)
	for _, n := range nodes {
		fresh := make([]string, nCold)
		for i := range fresh {
			if fresh[i], err = n.mint(); err != nil {
				return fmt.Errorf("%s: %w", n.name, err)
			}
		}
		reads0, secs0 := storeOps(n, "get")
		cold, err := latencies(n, fresh)
		if err != nil {
			return err
		}
		reads1, secs1 := storeOps(n, "get")
		warm, err := latencies(n, fresh)
		if err != nil {
			return err
		}
		reads2, _ := storeOps(n, "get")
		fmt.Printf("  %-8s first request : p50 %s, p90 %s, p99 %s\n", n.name, pct(cold, 50), pct(cold, 90), pct(cold, 99))
		fmt.Printf("  %-8s second request: p50 %s, p90 %s, p99 %s; first − second at p50: %s\n", n.name, pct(warm, 50), pct(warm, 90), pct(warm, 99), pct(cold, 50)-pct(warm, 50))
		if n.dir == "" {
			fmt.Printf("  %-8s store reads (Caddy's portcullis_store_statement_duration_seconds{operation=\"get\"}): %.2f per first request, taking %s on average; %.2f per second request\n",
				n.name, (reads1-reads0)/float64(nCold), time.Duration((secs1-secs0)/max(1, reads1-reads0)*float64(time.Second)).Round(time.Microsecond), (reads2-reads1)/float64(nCold))
		}
	}

	// token endpoint
	fmt.Printf("\n-- token endpoint: client_credentials over HTTP (plain loopback), %d connections, secret remembered --\n", conns)
	var fns []func() sample
	for _, n := range nodes {
		one := func(hc *http.Client) bool {
			_, _, err := mintOnce(hc, n.base("auth"))
			if err == nil {
				n.minted.Add(1)
			}
			return err == nil
		}
		loadFunc(n.hc, conns, time.Second, one) // a second of load first, off the record
		fns = append(fns, func() sample {
			return measure(n, "tokens", "auth", headers{}, func() float64 { return loadFunc(n.hc, conns, duration, one) })
		})
	}
	got := alternateN(rounds, fns...)
	for i, n := range nodes {
		fmt.Printf("  %-8s: %s tokens/s (median %.0f), Caddy CPU %.1f µs/token", n.name, fmtAll(rates(got[i])), median(rates(got[i])), median(cpus(got[i])))
		if n.dir == "" {
			db := make([]float64, len(got[i]))
			for k, x := range got[i] {
				db[k] = x.dbPerReq
			}
			fmt.Printf(", PostgreSQL's CPU %.1f µs/token", median(db))
		}
		fmt.Println()
	}
	if len(nodes) == 2 {
		r, c := make([]float64, rounds), make([]float64, rounds)
		for k := range r {
			r[k] = got[1][k].rate / got[0][k].rate
			c[k] = got[0][k].cpuPerReq / got[1][k].cpuPerReq
		}
		fmt.Printf("  postgres / badger: throughput %.3f, CPU cost (badger's CPU per token / postgres's) %.3f (medians of %d paired rounds)\n", median(r), median(c), rounds)
	}
	worstOthers(got)

	// memory with nTokens live tokens
	fmt.Printf("\n-- memory: minting up to %d live tokens on each node --\n", nTokens)
	for _, n := range nodes {
		goHeapInUse(n.c.admin, true)
	}
	time.Sleep(settle)
	for _, n := range nodes {
		nodeMemory(n, "before minting", pg, dsn)
	}
	for _, n := range nodes {
		left := int(int64(nTokens) - n.minted.Load())
		if left <= 0 {
			continue
		}
		start := time.Now()
		if err := mintMany(left, conns, n.mint); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		took := time.Since(start)
		fmt.Printf("  %-8s: minted %d tokens in %s: %.0f tokens/s\n", n.name, left, took.Round(time.Millisecond), float64(left)/took.Seconds())
	}
	for _, n := range nodes {
		nodeMemory(n, "after minting", pg, dsn)
	}
	time.Sleep(settle)
	for _, n := range nodes {
		goHeapInUse(n.c.admin, true)
		nodeMemory(n, fmt.Sprintf("%s after minting", settle), pg, dsn)
	}
	if len(nodes) == 2 {
		a, b := procStatus(nodes[1].c.pid, "VmRSS"), procStatus(nodes[0].c.pid, "VmRSS")
		fmt.Printf("  RSS with %d live tokens, postgres / badger: %.3f (goal: at most 1)\n", nTokens, float64(a)/float64(b))
	}

	fmt.Printf("\n-- gate, warm caches, %d live tokens --\n", nTokens)
	warmRounds(fmt.Sprintf("Bearer, warm cache, %d live tokens", nTokens), "gate-warm-many")
	return nil
}

// worstOthers prints the most CPU other processes took during a round.
func worstOthers(got [][]sample) {
	worst := 0.0
	for _, s := range got {
		for _, x := range s {
			worst = max(worst, x.others)
		}
	}
	fmt.Printf("  other processes' CPU: at most %.2f cores during a round%s\n", worst, disturbed(worst))
}

// latencies sends one gated request with each token, one at a time, and returns their latencies.
func latencies(n *node, tokens []string) ([]time.Duration, error) {
	out := make([]time.Duration, len(tokens))
	for i, t := range tokens {
		d, err := timedGet(n.hc, n.base("gated")+"/", "Authorization", "Bearer "+t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.name, err)
		}
		out[i] = d
	}
	return out, nil
}

// pct is the p-th percentile of d (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(time.Microsecond)
}

func fmtSigned(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%+.3f", x)
	}
	return strings.Join(parts, ", ")
}

// storeOps is the PostgreSQL store's count and total seconds of one operation (get, put, …), from
// Caddy's admin /metrics (portcullis_store_statement_duration_seconds), or zeros for Badger.
func storeOps(n *node, op string) (count, seconds float64) {
	if n.dir != "" {
		return 0, 0
	}
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", n.c.admin))
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, line := range strings.Split(b.String(), "\n") {
		for _, part := range []struct {
			suffix string
			v      *float64
		}{{"_count", &count}, {"_sum", &seconds}} {
			if rest, ok := strings.CutPrefix(line, "portcullis_store_statement_duration_seconds"+part.suffix+`{operation="`+op+`"} `); ok {
				*part.v, _ = strconv.ParseFloat(strings.TrimSpace(rest), 64)
			}
		}
	}
	return count, seconds
}

// nodeMemory prints a node's memory (as memory does) and, for PostgreSQL, the database's size.
func nodeMemory(n *node, when string, pg *pgtest.Server, dsn string) {
	fmt.Printf("  %-8s ", n.name)
	if n.dir != "" {
		memory(when, n.c.pid, n.c.admin, n.dir)
		return
	}
	const mib = 1 << 20
	rss := procStatus(n.c.pid, "VmRSS")
	fmt.Printf("%s: Caddy RSS %.1f MiB (anon %.1f, file %.1f, peak %.1f), Go heap in use %.1f MiB (live after a GC %.1f); database %.1f MiB\n",
		when, float64(rss)/mib, float64(procStatus(n.c.pid, "RssAnon"))/mib,
		float64(procStatus(n.c.pid, "RssFile")+procStatus(n.c.pid, "RssShmem"))/mib, float64(procStatus(n.c.pid, "VmHWM"))/mib,
		goHeapInUse(n.c.admin, false)/mib, goHeapInUse(n.c.admin, true)/mib, float64(pgDatabaseSize(dsn))/mib)
}

// pgExec runs statements on the database of dsn, one after another.
func pgExec(dsn string, statements ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("postgres: %s: %w", s, err)
		}
	}
	return nil
}

// pgQuery returns the first column of the first row of query as text, or "?".
func pgQuery(dsn, query string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "?"
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, query).Scan(&v); err != nil {
		return "?"
	}
	return v
}

func pgVersion(dsn string) string { return pgQuery(dsn, "SHOW server_version") }

func pgDatabaseSize(dsn string) int64 {
	v, _ := strconv.ParseInt(pgQuery(dsn, "SELECT pg_database_size(current_database())::text"), 10, 64)
	return v
}

// pgAffinity is the CPU list the postmaster may run on (from its pid file and /proc).
func pgAffinity(dir string) string {
	pid := postmasterPID(dir)
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return "core(s) " + strings.TrimSpace(v)
		}
	}
	return "?"
}

// pgCPU is the CPU time the PostgreSQL server's processes have used (the postmaster and its
// children, from /proc/<pid>/schedstat), or 0 without a server.
func pgCPU(pg *pgtest.Server) time.Duration {
	if pg == nil {
		return 0
	}
	root := postmasterPID(pg.Dir)
	if root == 0 {
		return 0
	}
	total := processCPU(root)
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so read after its closing parenthesis
		rest := data[bytes.LastIndexByte(data, ')')+1:]
		f := strings.Fields(string(rest))
		if len(f) > 1 && f[1] == strconv.Itoa(root) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			total += processCPU(pid)
		}
	}
	return total
}

// postmasterPID reads the server's pid from its data directory, or returns 0.
func postmasterPID(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
	return pid
}

func poolSize(n int) string {
	if n > 0 {
		return fmt.Sprintf("max_connections %d", n)
	}
	return "the default size (4 × GOMAXPROCS: 4 on one pinned core)"
}
