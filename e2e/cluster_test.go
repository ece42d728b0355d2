package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// crossNodeBound is the documented bound: how long after an end (a revocation, a sign-out, a
// family revoked by reuse) on one node another node may still accept what was ended.
const crossNodeBound = 100 * time.Millisecond

// eventLimit is how long the checks of a single end wait for the other node to refuse it. The
// bound itself is held by the measured revocation subtest over many tries; a single event on
// a loaded 2-core machine, against -race servers, is given more room so it is not flaky, and
// its time is logged.
const eventLimit = time.Second

// Two Caddy nodes with the same Caddyfile and users file on one PostgreSQL database behave as
// one provider and one gateway (issue 16): tokens, codes, sessions, refresh-token families, bans
// and keys are shared; what one node ends the other refuses within the bound, with its caches
// warm; the database going away makes both answer 503 and both come back by themselves; a node
// killed under load loses no token it answered with and the other keeps serving.
func TestCluster(t *testing.T) {
	begin := time.Now()
	c := startCluster(t)
	a, b := c.a, c.b
	t.Logf("two nodes started at once on an empty database, both ready after %v", time.Since(begin).Round(time.Millisecond))

	t.Run("both nodes started at once share one key set and one HMAC secret", func(t *testing.T) {
		ja, kids := a.jwks(t)
		jb, kidsB := b.jwks(t)
		if len(kids) == 0 || ja != jb {
			t.Errorf("the nodes publish different key sets: A %v, B %v", kids, kidsB)
		}
		// an opaque token is an HMAC under the secret: each node's tokens pass the other's gate
		if st := b.gateStatus(a.token(t)); st != http.StatusOK {
			t.Errorf("a token minted on A at B's gate: %d, want 200 (one HMAC secret)", st)
		}
		if st := a.gateStatus(b.token(t)); st != http.StatusOK {
			t.Errorf("a token minted on B at A's gate: %d, want 200 (one HMAC secret)", st)
		}
		// an ID token signed on A verifies against B's JWKS, as an application behind the
		// load balancer would check it
		raw, nonce := a.idToken(t, a.browser(t, newJar(t)))
		b.on(t).verifyIDToken("app", raw, nonce)
	})

	t.Run("a token minted on A is accepted by B's gate", func(t *testing.T) {
		tok := a.token(t)
		rec := bearerCall(t, b.hc, b.url("secure", "/api/items"), tok, http.StatusOK)
		hdr, _ := rec["headers"].(map[string]any)
		if got := asStrings(hdr["Remote-Client-Id"]); len(got) != 1 || got[0] != "kuma" {
			t.Errorf("B's upstream got Remote-Client-ID %v, want kuma", hdr["Remote-Client-Id"])
		}
	})

	t.Run("revoked on A, refused by B's warm gate within the bound", func(t *testing.T) {
		// a hundred tries, so that p99 is not the maximum: one stall of a loaded 2-core machine
		// (a -race server, the other tests' builds) must not decide the figure alone
		const tries = 100
		var took []time.Duration
		var odd []string
		missed := 0
		for i := range tries {
			tok := a.token(t)
			for range 2 { // B's gate has decoded and cached the token
				if st := b.gateStatus(tok); st != http.StatusOK {
					t.Fatalf("try %d: a fresh token at B: %d", i, st)
				}
			}
			a.revoke(t, tok)
			var last *http.Response
			d, ok := until(2*time.Second, func() bool {
				resp, err := b.gate(b.hc, tok)
				if err != nil {
					odd = append(odd, err.Error())
					return false
				}
				last = resp
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
					odd = append(odd, fmt.Sprint(resp.StatusCode))
				}
				return resp.StatusCode == http.StatusUnauthorized
			})
			if !ok {
				missed++
				t.Errorf("try %d: B still accepted the token %v after A revoked it", i, d.Round(time.Millisecond))
				if missed == 3 {
					t.Fatalf("B never refused a token A revoked (3 of %d tries)", i+1)
				}
				continue
			}
			if w := last.Header.Get("WWW-Authenticate"); !strings.Contains(w, `error="invalid_token"`) {
				t.Errorf("try %d: B's refusal of a revoked token: WWW-Authenticate %q", i, w)
			}
			took = append(took, d)
		}
		if len(odd) > 0 {
			t.Errorf("answers other than 200 or 401 while B caught up: %v", odd[:min(len(odd), 10)])
		}
		s := sortedCopy(took)
		p50, p99 := percentile(s, 50), percentile(s, 99)
		t.Logf("revocation on A to the first 401 on B (warm cache), %d tries: p50 %v, p99 %v, max %v",
			len(s), p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
		if p99 > crossNodeBound {
			t.Errorf("p99 %v is above the documented bound %v", p99, crossNodeBound)
		}
	})

	t.Run("a session made on A works on B; signing out on B ends it on A", func(t *testing.T) {
		jar := newJar(t)
		onA, onB := a.browser(t, jar), b.browser(t, jar)
		onA.signIn("", "john", "pw-john")
		session := onA.cookie("portcullis_session")
		if session == "" {
			t.Fatal("no session cookie after signing in on A")
		}
		if resp, page := onB.do(http.MethodGet, b.url("secure", "/page"), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("the session made on A at B's gate: %d %q: %.200s", resp.StatusCode, resp.Header.Get("Location"), page)
		}
		// both gates have the session cached
		for _, n := range []*clusterNode{a, b} {
			if resp := getWithCookie(t, n.hc, n.url("secure", "/page"), session); resp.StatusCode != http.StatusOK {
				t.Fatalf("the session at %s's gate: %d", n.name, resp.StatusCode)
			}
		}
		onB.signOut()
		// the cookie itself, replayed (the browser dropped it): the session is over on A too
		d, ok := until(eventLimit, func() bool {
			return getWithCookie(t, a.hc, a.url("secure", "/page"), session).StatusCode == http.StatusFound
		})
		if !ok {
			t.Fatalf("A still let the session in %v after it was signed out on B", d.Round(time.Millisecond))
		}
		t.Logf("sign-out on B to the session's refusal on A: %v", d.Round(10*time.Microsecond))
		if st := getWithCookie(t, b.hc, b.url("secure", "/page"), session).StatusCode; st != http.StatusFound {
			t.Errorf("the signed-out session at B's gate: %d, want 302 to the portal", st)
		}
	})

	t.Run("a code issued on A is redeemed on B and cannot be redeemed again on A", func(t *testing.T) {
		onA := a.browser(t, newJar(t))
		code, ar := gwCode(t, onA, a)
		status, out, err := b.exchangeCode(b.hc, code, ar.verifier)
		at, _ := out["access_token"].(string)
		rt, _ := out["refresh_token"].(string)
		if err != nil || status != http.StatusOK || at == "" || rt == "" {
			t.Fatalf("A's code redeemed on B: %d %v %v", status, out, err)
		}
		for _, n := range []*clusterNode{a, b} {
			if st := n.gateStatus(at); st != http.StatusOK {
				t.Fatalf("the code's access token at %s's gate: %d", n.name, st)
			}
		}
		status, out, err = a.exchangeCode(a.hc, code, ar.verifier)
		if err != nil || status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("the code redeemed again on A: %d %v %v, want 400 invalid_grant", status, out, err)
		}
		// RFC 6749 §4.1.2: the tokens issued for a code used twice are revoked, on every node
		for _, n := range []*clusterNode{b, a} {
			if d, ok := until(eventLimit, func() bool { return n.gateStatus(at) == http.StatusUnauthorized }); !ok {
				t.Errorf("%s's gate still accepts the access token of a replayed code after %v", n.name, d.Round(time.Millisecond))
			}
		}
		if status, out := b.refresh(t, rt); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("the refresh token of a replayed code on B: %d %v, want 400 invalid_grant", status, out)
		}
	})

	t.Run("both nodes race to redeem one code: exactly one succeeds", func(t *testing.T) {
		const racers = 16
		onA := a.browser(t, newJar(t))
		for round := range 3 {
			code, ar := gwCode(t, onA, a)
			type result struct {
				node   string
				status int
				out    map[string]any
				err    error
			}
			results := make([]result, racers)
			clients := make([]*http.Client, racers)
			for i := range racers {
				n := []*clusterNode{a, b}[i%2]
				clients[i] = n.client("")
				// each racer's connection is open before the start, so they arrive together
				if resp, err := clients[i].Get(n.url("auth", "/.well-known/openid-configuration")); err == nil {
					resp.Body.Close()
				}
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range racers {
				n := []*clusterNode{a, b}[i%2]
				wg.Go(func() {
					<-start
					status, out, err := n.exchangeCode(clients[i], code, ar.verifier)
					results[i] = result{n.name, status, out, err}
				})
			}
			close(start)
			wg.Wait()
			var won []result
			for _, r := range results {
				switch {
				case r.err == nil && r.status == http.StatusOK:
					won = append(won, r)
				case r.err == nil && r.status == http.StatusBadRequest && r.out["error"] == "invalid_grant":
				default:
					t.Errorf("round %d: a racer on %s: %d %v %v, want 200 or 400 invalid_grant\n%s", round, r.node, r.status, r.out, r.err,
						map[string]*clusterNode{"A": a, "B": b}[r.node].errorLines())
				}
			}
			if len(won) != 1 {
				t.Fatalf("round %d: %d of %d racers on both nodes redeemed one code, want exactly 1", round, len(won), racers)
			}
			at, _ := won[0].out["access_token"].(string)
			rt, _ := won[0].out["refresh_token"].(string)
			// whatever the racers did, one more replay on the other node ends the code's tokens
			other := map[string]*clusterNode{"A": b, "B": a}[won[0].node]
			if status, out, err := other.exchangeCode(other.hc, code, ar.verifier); err != nil || status != http.StatusBadRequest {
				t.Errorf("round %d: a replay on %s after the race: %d %v %v", round, other.name, status, out, err)
			}
			for _, n := range []*clusterNode{a, b} {
				if d, ok := until(eventLimit, func() bool { return n.gateStatus(at) == http.StatusUnauthorized }); !ok {
					t.Errorf("round %d: %s's gate still accepts the winner's access token %v after the replays", round, n.name, d.Round(time.Millisecond))
				}
			}
			if status, out := a.refresh(t, rt); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
				t.Errorf("round %d: the winner's refresh token after the replays: %d %v, want 400 invalid_grant", round, status, out)
			}
		}
	})

	t.Run("a refresh-token reuse on A revokes the family on B", func(t *testing.T) {
		onA := a.browser(t, newJar(t))
		code, ar := gwCode(t, onA, a)
		status, out, err := a.exchangeCode(a.hc, code, ar.verifier)
		at1, _ := out["access_token"].(string)
		rt1, _ := out["refresh_token"].(string)
		if err != nil || status != http.StatusOK || rt1 == "" {
			t.Fatalf("code exchange on A: %d %v %v", status, out, err)
		}
		// rotated on B
		status, out = b.refresh(t, rt1)
		at2, _ := out["access_token"].(string)
		rt2, _ := out["refresh_token"].(string)
		if status != http.StatusOK || at2 == "" || rt2 == "" || rt2 == rt1 {
			t.Fatalf("refresh on B: %d %v", status, out)
		}
		if st := a.gateStatus(at1); st != http.StatusUnauthorized {
			t.Errorf("the access token of a rotated refresh token at A's gate: %d, want 401", st)
		}
		for _, n := range []*clusterNode{a, b} {
			if st := n.gateStatus(at2); st != http.StatusOK {
				t.Fatalf("the refreshed access token at %s's gate: %d", n.name, st)
			}
		}
		// the spent refresh token presented again on A: refused, and its family ends
		if status, out := a.refresh(t, rt1); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("a spent refresh token on A: %d %v, want 400 invalid_grant", status, out)
		}
		d, ok := until(eventLimit, func() bool { return b.gateStatus(at2) == http.StatusUnauthorized })
		if !ok {
			t.Errorf("B's gate still accepts the family's access token %v after the reuse on A", d.Round(time.Millisecond))
		} else {
			t.Logf("refresh-token reuse on A to the family's refusal at B's gate: %v", d.Round(10*time.Microsecond))
		}
		if status, out := b.refresh(t, rt2); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("the family's live refresh token on B after the reuse: %d %v, want 400 invalid_grant", status, out)
		}
	})

	t.Run("both nodes race to rotate one refresh token: exactly one succeeds", func(t *testing.T) {
		const racers = 16
		onA := a.browser(t, newJar(t))
		code, ar := gwCode(t, onA, a)
		status, out, err := a.exchangeCode(a.hc, code, ar.verifier)
		rt, _ := out["refresh_token"].(string)
		if err != nil || status != http.StatusOK || rt == "" {
			t.Fatalf("code exchange on A: %d %v %v", status, out, err)
		}
		type result struct {
			node   string
			status int
			out    map[string]any
			err    error
		}
		results := make([]result, racers)
		clients := make([]*http.Client, racers)
		for i := range racers {
			n := []*clusterNode{a, b}[i%2]
			clients[i] = n.client("")
			if resp, err := clients[i].Get(n.url("auth", "/.well-known/openid-configuration")); err == nil {
				resp.Body.Close()
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range racers {
			n := []*clusterNode{a, b}[i%2]
			wg.Go(func() {
				<-start
				status, out, err := n.grant(clients[i], url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				results[i] = result{n.name, status, out, err}
			})
		}
		close(start)
		wg.Wait()
		var won []result
		for _, r := range results {
			switch {
			case r.err == nil && r.status == http.StatusOK:
				won = append(won, r)
			case r.err == nil && r.status == http.StatusBadRequest && r.out["error"] == "invalid_grant":
			default:
				t.Errorf("a racer on %s: %d %v %v, want 200 or 400 invalid_grant\n%s", r.node, r.status, r.out, r.err,
					map[string]*clusterNode{"A": a, "B": b}[r.node].errorLines())
			}
		}
		if len(won) != 1 {
			t.Fatalf("%d of %d racers on both nodes rotated one refresh token, want exactly 1", len(won), racers)
		}
	})

	t.Run("a ban made by failures on A holds on B", func(t *testing.T) {
		// B has let jane in from .21 before (whatever it remembers of that must not outlive the ban)
		if st := b.basicStatus(t, "127.0.0.21", "jane", "pw-jane"); st != http.StatusOK {
			t.Fatalf("jane with her password on B: %d", st)
		}
		for i := range 3 {
			if st := a.basicStatus(t, "127.0.0.21", "jane", fmt.Sprint("guess-", i)); st != http.StatusUnauthorized {
				t.Fatalf("a wrong password on A: %d, want 401", st)
			}
		}
		// a ban reaches the other node within the bound; the right password is tried once after
		// twice the bound (a try that got in would count as a sign-in, so no polling)
		settle := func() { time.Sleep(2 * crossNodeBound) }
		settle()
		if st := b.basicStatus(t, "127.0.0.21", "jane", "pw-jane"); st != http.StatusUnauthorized {
			t.Errorf("B let the address A banned in with the right password %v after the ban: %d, want 401", 2*crossNodeBound, st)
		}
		if st := a.basicStatus(t, "127.0.0.21", "jane", "pw-jane"); st != http.StatusUnauthorized {
			t.Errorf("the banned address with the right password on A: %d, want 401", st)
		}
		if st := b.basicStatus(t, "127.0.0.22", "jane", "pw-jane"); st != http.StatusOK {
			t.Errorf("jane from another address on B: %d, want 200 (the ban is of one address)", st)
		}
		// failures on both nodes add up: two on A and one on B are three
		for i, n := range []*clusterNode{a, a, b} {
			if st := n.basicStatus(t, "127.0.0.23", "jane", fmt.Sprint("split-", i)); st != http.StatusUnauthorized {
				t.Fatalf("a wrong password on %s: %d, want 401", n.name, st)
			}
		}
		settle()
		for _, n := range []*clusterNode{a, b} {
			if st := n.basicStatus(t, "127.0.0.23", "jane", "pw-jane"); st != http.StatusUnauthorized {
				t.Errorf("after two failures on A and one on B, the right password on %s: %d, want 401 (a node's share of the guesses must not reset the count)", n.name, st)
			}
		}
		// the portal's password failures on A ban the portal's sign-in on B
		pa, pb := a.on(t).portalSite, b.on(t).portalSite
		for range 3 {
			if cookie, st := pa.signIn(a.client("127.0.0.24"), "jane", "wrong"); cookie != "" || st != http.StatusUnauthorized {
				t.Fatalf("a wrong password at A's portal: %d (cookie %v), want 401", st, cookie != "")
			}
		}
		settle()
		for _, n := range []*clusterNode{b, a} {
			if cookie, st := n.on(t).signIn(n.client("127.0.0.24"), "jane", "pw-jane"); cookie != "" {
				t.Errorf("%s's portal signed in an address A's portal banned: %d", n.name, st)
			}
		}
		if cookie, st := pb.signIn(b.client("127.0.0.25"), "jane", "pw-jane"); cookie == "" {
			t.Errorf("jane from another address at B's portal: %d, no session", st)
		}
	})

	t.Run("40 guesses at once over both nodes get at most max_retries password checks", func(t *testing.T) {
		const from = "127.0.0.26"
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := []*clusterNode{a, b}[i%2]
				if st := n.basicStatus(t, from, "jane", fmt.Sprint("burst-", i)); st != http.StatusUnauthorized {
					t.Errorf("guess %d on %s: %d, want 401", i, n.name, st)
				}
			}()
		}
		wg.Wait()
		logs := func() string { return a.srv.log.String() + b.srv.log.String() }
		for deadline := time.Now().Add(5 * time.Second); strings.Count(logs(), `"remote_ip":"`+from+`"`) < 40 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		checked := `"remote_ip":"` + from + `","user":"jane","reason":"wrong credentials"`
		if n := strings.Count(logs(), checked); n == 0 || n > 3 {
			t.Errorf("%d of 40 simultaneous guesses over two nodes got a password check, want 1 to 3 (max_retries)", n)
		}
		for _, n := range []*clusterNode{a, b} {
			if st := n.basicStatus(t, from, "jane", "pw-jane"); st != http.StatusUnauthorized {
				t.Errorf("the right password on %s after the burst: %d, want 401 (banned)", n.name, st)
			}
		}
	})

	t.Run("a reload of A keeps its pool and its listener", func(t *testing.T) {
		before := backends(t, c)
		cfg, err := os.ReadFile(a.srv.config)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/load", a.srv.adminPort),
			strings.NewReader(strings.Replace(string(cfg), "inactivity 5m", "inactivity 6m", 1)))
		req.Header.Set("Content-Type", "text/caddyfile")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("reload: %d", resp.StatusCode)
		}
		// while the configs are swapped a connection may be dropped or answered 503
		var tok string
		if _, ok := until(10*time.Second, func() bool {
			minted, status, err := a.mint(a.client(""))
			tok = minted
			return err == nil && status == http.StatusOK
		}); !ok {
			t.Fatalf("A does not mint tokens after its reload:\n%s", a.srv.log.String())
		}
		if st := a.gateStatus(tok); st != http.StatusOK {
			t.Fatalf("a fresh token at A's gate after its reload: %d", st)
		}
		// A still hears B's ends
		b.revoke(t, tok)
		if d, ok := until(eventLimit, func() bool { return a.gateStatus(tok) == http.StatusUnauthorized }); !ok {
			t.Errorf("after its reload A still accepts a token B revoked %v ago", d.Round(time.Millisecond))
		}
		// the pool and the listening connection outlive the reload: no connection was closed
		if after := backends(t, c); len(before) == 0 || slices.ContainsFunc(before, func(pid int32) bool { return !slices.Contains(after, pid) }) {
			t.Errorf("the database's sessions were %v before A's reload and %v after: A closed connections (its pool or its listener) and opened others", before, after)
		}
	})

	t.Run("the database stopped and started: 503s, then recovery without a restart", func(t *testing.T) {
		warm := a.token(t)
		cold := b.token(t) // never shown to a gate before the database goes
		jar := newJar(t)
		onA := a.browser(t, jar)
		onA.signIn("", "john", "pw-john")
		session := onA.cookie("portcullis_session")
		for _, n := range []*clusterNode{a, b} {
			if st := n.gateStatus(warm); st != http.StatusOK {
				t.Fatalf("a token at %s's gate: %d", n.name, st)
			}
			if st := getWithCookie(t, n.hc, n.url("secure", "/"), session).StatusCode; st != http.StatusOK {
				t.Fatalf("a session at %s's gate: %d", n.name, st)
			}
		}
		type probe struct {
			what  string
			check func(n *clusterNode) (status int, detail string)
		}
		gate := func(tok string) func(n *clusterNode) (int, string) {
			return func(n *clusterNode) (int, string) {
				resp, err := n.gate(n.hc, tok)
				if err != nil {
					return 0, err.Error()
				}
				return resp.StatusCode, resp.Header.Get("Retry-After")
			}
		}
		probes := []probe{
			{"a token both gates have cached", gate(warm)},
			{"a token no gate has seen", gate(cold)},
			{"a session both gates have cached", func(n *clusterNode) (int, string) {
				resp := getWithCookie(t, n.hc, n.url("secure", "/"), session)
				return resp.StatusCode, resp.Header.Get("Retry-After")
			}},
			{"the token endpoint", func(n *clusterNode) (int, string) {
				status, out, err := n.tokenEndpoint(n.hc, "kuma", kumaSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}})
				if err != nil {
					return status, err.Error()
				}
				return status, fmt.Sprint(out["error"])
			}},
		}
		isEndpoint := func(p probe) bool { return p.what == "the token endpoint" }
		// a user's refresh, which the database must answer, is 503 too while it is down
		code, ar := gwCode(t, onA, a)
		status, out, err := a.exchangeCode(a.hc, code, ar.verifier)
		rt, _ := out["refresh_token"].(string)
		if err != nil || status != http.StatusOK || rt == "" {
			t.Fatalf("code exchange on A: %d %v %v", status, out, err)
		}

		c.pg.Stop()
		defer c.pg.StartAgain() // for the subtests after this one, should it stop early
		down := time.Now()
		// a node learns within the bound that its listening connection is gone
		time.Sleep(crossNodeBound)
		rounds := 0
		for time.Since(down) < 1500*time.Millisecond {
			rounds++
			for _, n := range []*clusterNode{a, b} {
				for _, p := range probes {
					status, detail := p.check(n)
					switch {
					case isEndpoint(p) && (status != http.StatusServiceUnavailable || detail != "temporarily_unavailable"):
						t.Errorf("database down: %s of %s: %d %s, want 503 temporarily_unavailable", p.what, n.name, status, detail)
					case !isEndpoint(p) && (status != http.StatusServiceUnavailable || detail == ""):
						t.Errorf("database down: %s at %s's gate: %d (Retry-After %q), want 503 with Retry-After", p.what, n.name, status, detail)
					}
				}
			}
			if t.Failed() {
				break
			}
		}
		for _, n := range []*clusterNode{a, b} {
			if status, out := n.refresh(t, rt); status != http.StatusServiceUnavailable || out["error"] != "temporarily_unavailable" {
				t.Errorf("database down: a refresh at %s: %d %v, want 503 temporarily_unavailable", n.name, status, out)
			}
		}
		t.Logf("database down: %d rounds of 503s from both nodes", rounds)

		c.pg.StartAgain()
		up := time.Now()
		seen := map[string]bool{}
		d, ok := until(30*time.Second, func() bool {
			all := true
			for _, n := range []*clusterNode{a, b} {
				for _, p := range probes {
					status, detail := p.check(n)
					if status == http.StatusOK {
						continue
					}
					all = false
					if status != http.StatusServiceUnavailable {
						if k := p.what + n.name; !seen[k] {
							seen[k] = true
							t.Errorf("database back: %s at %s: %d %s, want 503 until it recovers, then 200", p.what, n.name, status, detail)
						}
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
			return all
		})
		if !ok {
			t.Fatalf("both nodes had not recovered %v after the database came back", d.Round(time.Millisecond))
		}
		t.Logf("database back: both nodes answered 200 everywhere %v later", time.Since(up).Round(time.Millisecond))
		// the listeners are back too: an end on A reaches B's warm cache
		tok := a.token(t)
		if st := b.gateStatus(tok); st != http.StatusOK {
			t.Fatalf("a fresh token at B's gate: %d", st)
		}
		a.revoke(t, tok)
		if d, ok := until(eventLimit, func() bool { return b.gateStatus(tok) == http.StatusUnauthorized }); !ok {
			t.Errorf("after the database came back, B still accepts a token A revoked %v ago", d.Round(time.Millisecond))
		}
	})

	t.Run("kill -9 of A under load: no token lost, B keeps answering", func(t *testing.T) {
		var (
			mu       sync.Mutex
			fromA    []string
			bAnswers int
			bFailed  []string
			wg       sync.WaitGroup
		)
		stop := make(chan struct{})
		for i := range 4 {
			n := []*clusterNode{a, b}[i%2]
			hc := n.client("")
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					tok, status, err := n.mint(hc)
					if n == a {
						if err != nil {
							return // A is gone
						}
						if status == http.StatusOK {
							mu.Lock()
							fromA = append(fromA, tok)
							mu.Unlock()
						}
						continue
					}
					gated := 0
					if err == nil && status == http.StatusOK {
						if resp, gerr := n.gate(hc, tok); gerr == nil {
							gated = resp.StatusCode
						}
					}
					mu.Lock()
					bAnswers++
					if err != nil || status != http.StatusOK || gated != http.StatusOK {
						bFailed = append(bFailed, fmt.Sprintf("token %d %v, gate %d", status, err, gated))
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Second)
		a.kill9(t)
		mu.Lock()
		atKill := len(fromA)
		mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
		close(stop)
		wg.Wait()
		t.Logf("A answered %d tokens before it was killed; B answered %d token-and-gate rounds throughout, %d failed", len(fromA), bAnswers, len(bFailed))
		if atKill == 0 {
			t.Fatal("A answered no token before it was killed: no load")
		}
		if len(bFailed) > 0 {
			t.Errorf("B failed %d of %d rounds while A died: %v\n%s", len(bFailed), bAnswers, bFailed[:min(len(bFailed), 5)], b.errorLines())
		}
		lost := 0
		for _, tok := range fromA {
			if st := b.gateStatus(tok); st != http.StatusOK {
				lost++
				if lost <= 3 {
					t.Errorf("a token A answered with is refused by B after A's death: %d", st)
				}
			}
		}
		if lost > 0 {
			t.Errorf("%d of the %d tokens A answered with were lost", lost, len(fromA))
		}
	})
	t.Logf("the cluster test took %v", time.Since(begin).Round(time.Millisecond))
}

// backends are the process ids of the database sessions (the nodes' connections) of c's
// database, sorted.
func backends(t *testing.T, c *cluster) []int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY pid`, c.database)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}
