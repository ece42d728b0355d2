package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// The jwt mode (-mode jwt) measures the gate with JWT access tokens (RFC 9068) beside opaque
// tokens and plain Caddy, in one Caddy process, with -revoked revoked JWT access tokens in the
// store (written through oauth.Revocations before Caddy starts, exactly as revocations write
// them, so Caddy loads them into memory at start): for each of an opaque token, an ES256 JWT and
// an RS256 JWT, the plain site and the gated site with that token's Authorization header, in
// alternating rounds. It reports each gated/plain ratio, the JWT ratios over the opaque one, and
// what the revocation entries cost in memory (Caddy started on the empty store, then on the
// store with the entries).

// jwtConfig is the Caddyfile of the jwt mode: an opaque client and one JWT client per algorithm,
// the keys in files under dir.
func jwtConfig(admin, port int, upstream, dir, rsKey, esKey string) string {
	client := func(id, alg string) string {
		s := fmt.Sprintf(`
		client %s {
			secret "$plaintext$%s-secret"
			scopes authelia.bearer.authz
			audience http://gated.localhost:%d/
			grant_types client_credentials
			requested_audience_mode implicit
`, id, id, port)
		if alg != "" {
			s += "\t\t\taccess_token_signed_response_alg " + alg + "\n"
		}
		return s + "\t\t}\n"
	}
	return fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	log {
		level ERROR
	}
	oidc {
		issuer http://auth.localhost:%[2]d
		storage %[4]s
		signing_key bench-rs256 {
			algorithm RS256
			key_file %[5]s
		}
		signing_key bench-es256 {
			algorithm ES256
			key_file %[6]s
		}
%[7]s
		access_control {
			default_policy deny
			rule {
				domain gated.localhost
				subject oauth2:client:opaque
				subject oauth2:client:jwt-es256
				subject oauth2:client:jwt-rs256
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
http://gated.localhost:%[2]d {
	oidc_auth
	reverse_proxy %[3]s
}
`, admin, port, upstream, dir, rsKey, esKey, client("opaque", "")+client("jwt-es256", "ES256")+client("jwt-rs256", "RS256"))
}

// jwtGate runs the jwt mode.
func jwtGate(caddyBin string, duration time.Duration, rounds, conns, nRevoked int) error {
	work, err := os.MkdirTemp("", "portcullis-bench-jwt")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	scratch = work
	upstream, _, err := startUpstream(work)
	if err != nil {
		return err
	}
	defer upstream.Close()
	var keyFiles []string
	for _, alg := range []string{"RS256", "ES256"} {
		pemData, _, err := keys.Generate(alg, 2048)
		if err != nil {
			return err
		}
		p := filepath.Join(work, strings.ToLower(alg)+".pem")
		if err := os.WriteFile(p, pemData, 0o600); err != nil {
			return err
		}
		keyFiles = append(keyFiles, p)
	}
	hc := loopbackClient(conns)
	storeDir := filepath.Join(work, "store")
	start := func() (*caddyProc, error) {
		return startCaddy(hc, caddyBin, work, func(admin, port int) string {
			return jwtConfig(admin, port, upstream.Addr().String(), storeDir, keyFiles[0], keyFiles[1])
		}, func(port int) string { return fmt.Sprintf("http://plain.localhost:%d/", port) })
	}

	fmt.Printf("portcullis bench, JWT access tokens at the gate: %d connections, %d rounds of %s per site and token, alternating\n", conns, rounds, duration)
	const mib = 1 << 20
	caddy, err := start()
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	heapEmpty, rssEmpty := goHeapInUse(caddy.admin, true), procStatus(caddy.pid, "VmRSS")
	caddy.stop()

	kv, err := store.Open(storeDir, store.Options{}, zap.NewNop())
	if err != nil {
		return err
	}
	ctx := context.Background()
	revocations, err := oauth.LoadRevocations(ctx, kv)
	if err != nil {
		return err
	}
	began := time.Now()
	for range nRevoked {
		if err := revocations.RevokeToken(ctx, kv, uuid.Must(uuid.NewV7()), time.Now().Add(time.Hour)); err != nil {
			return err
		}
	}
	fmt.Printf("wrote %d revoked-token entries in %s\n", nRevoked, time.Since(began).Round(time.Millisecond))
	if err := kv.Destruct(); err != nil {
		return err
	}

	caddy, err = start()
	if err != nil {
		return err
	}
	defer caddy.stop()
	time.Sleep(2 * time.Second)
	heapFull, rssFull := goHeapInUse(caddy.admin, true), procStatus(caddy.pid, "VmRSS")
	fmt.Printf("Caddy on the empty store: Go heap live %.1f MiB, RSS %.1f MiB\n", heapEmpty/mib, float64(rssEmpty)/mib)
	fmt.Printf("Caddy with %d revoked-token entries: Go heap live %.1f MiB, RSS %.1f MiB: the entries cost %.1f MiB of heap (%.0f bytes each), %.1f MiB of RSS\n",
		nRevoked, heapFull/mib, float64(rssFull)/mib, (heapFull-heapEmpty)/mib, (heapFull-heapEmpty)/float64(nRevoked), float64(rssFull-rssEmpty)/mib)

	base := func(h string) string { return fmt.Sprintf("http://%s.localhost:%d", h, caddy.port) }
	tokens := map[string]string{}
	for _, client := range []string{"opaque", "jwt-es256", "jwt-rs256"} {
		var tok string
		for attempt := 0; tok == ""; attempt++ {
			var retry bool
			if tok, retry, err = mintAs(hc, base("auth"), client); err != nil && (!retry || attempt == 50) {
				return fmt.Errorf("%s: %w", client, err)
			}
			if retry {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if jwt := strings.Count(tok, ".") == 2 && !strings.HasPrefix(tok, oauth.TokenPrefix); jwt != (client != "opaque") {
			return fmt.Errorf("%s got %.20s…", client, tok)
		}
		if took, err := timedGet(hc, base("gated")+"/", "Authorization", "Bearer "+tok); err != nil {
			return fmt.Errorf("%s's token at the gate: %w", client, err)
		} else {
			fmt.Printf("%s: first request at the gate (verifies the token): %s\n", client, took.Round(time.Microsecond))
		}
		tokens[client] = tok
	}
	fmt.Printf("load generator: %s\n\n", map[bool]string{true: "wrk (1 thread)", false: "Go, in this process"}[useWrk])

	measure := func(host string, h headers) func() sample {
		return func() sample {
			cpu0, busy0, own0, start := processCPU(caddy.pid), machineBusy(), ownCPU(), time.Now()
			var rate float64
			if useWrk {
				rate = wrk(caddy.port, fmt.Sprintf("%s.localhost:%d", host, caddy.port), h, conns, duration)
			} else {
				rate = load(hc, base(host)+"/", h, conns, duration)
			}
			cpu := processCPU(caddy.pid) - cpu0
			others := machineBusy() - busy0 - cpu - (ownCPU() - own0)
			return sample{rate: rate, cpuPerReq: cpu.Seconds() * 1e6 / (rate * duration.Seconds()), others: max(0, others.Seconds()/time.Since(start).Seconds())}
		}
	}
	kinds := []string{"opaque", "jwt-es256", "jwt-rs256"}
	var fns []func() sample
	for _, k := range kinds {
		h := headers{fixed: []string{"Authorization: Bearer " + tokens[k]}}
		fns = append(fns, measure("plain", h), measure("gated", h))
	}
	got := alternateN(rounds, fns...)
	ratios := map[string]result{}
	for i, k := range kinds {
		ratios[k] = report(fmt.Sprintf("%s token, %d revoked-token entries in memory", k, nRevoked), "oidc_auth + proxy", got[2*i], got[2*i+1])
	}
	fmt.Printf("\nsummary (gated/plain throughput, median of paired rounds):\n")
	for _, k := range kinds {
		fmt.Printf("  %-10s %.3f (CPU %.3f)%s\n", k, ratios[k].ratio, ratios[k].cpuRatio, disturbed(ratios[k].others))
	}
	for _, k := range kinds[1:] {
		gatedOver := median(rates(got[2*indexOf(kinds, k)+1])) / median(rates(got[1]))
		fmt.Printf("  %s vs opaque: ratio of ratios %.3f; gated throughput %.3f of the opaque token's\n", k, ratios[k].ratio/ratios["opaque"].ratio, gatedOver)
	}
	return nil
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// mintAs asks the token endpoint for a gateway token as client (whose secret is
// "<client>-secret"); retry is true on 503.
func mintAs(hc *http.Client, auth, client string) (token string, retry bool, err error) {
	req, _ := http.NewRequest("POST", auth+"/api/oidc/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, client+"-secret")
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
