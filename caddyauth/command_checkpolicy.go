package caddyauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/spf13/cobra"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
)

// check-policy is a `caddy oidc` command like those in oidcprovider's command_*.go, registered
// through oidcprovider.AddCommand, but it lives here: it judges a URL with the gateway's own code
// (the site's GateConfig read from the oidc_auth handler's JSON, newGate, decide and the method and
// path refusals), and oidcprovider must never import caddyauth.
func init() { oidcprovider.AddCommand(checkPolicyCommand) }

// policyCheck is what check-policy reports (its --json output).
type policyCheck struct {
	URL     string `json:"url"`
	Method  string `json:"method"`
	Subject string `json:"subject,omitempty"`
	IP      string `json:"ip,omitempty"`
	// Site is the site that serves the URL, or "" when none does.
	Site string `json:"site,omitempty"`
	// Guarded is true when an oidc_auth (or the oidc authentication provider) guards the URL.
	Guarded bool `json:"guarded"`
	// Notes are things the check could not settle, or that change the answer.
	Notes []string `json:"notes,omitempty"`
	// Rules lists every rule, the site's first, with its outcome.
	Rules []ruleCheck `json:"rules"`
	// Policy is the deciding rule's policy, or the default policy.
	Policy string `json:"policy"`
	// Decided is the deciding rule, or "default_policy".
	Decided string `json:"decided_by"`
	// Answer is what the gate does: allow, 401, 403, portal, 400.
	Answer string `json:"answer"`
}

type ruleCheck struct {
	Rule   string `json:"rule"`
	Policy string `json:"policy"`
	Match  string `json:"match"`
}

func checkPolicyCommand() *cobra.Command {
	var (
		configFile, adapter, rawURL, method, ip string
		subjects                                []string
		asJSON                                  bool
	)
	cmd := oidcprovider.Subcommand("check-policy", "Show what the gateway decides for a request",
		`Loads a config (without opening the store or starting a server), finds the site that serves
--url and its oidc_auth rules, and prints every rule (the site's, then the global access_control
list) as match, no match or may match, then the deciding policy and what the gate answers.

--subject describes the caller; repeat it for a user and their groups:
  --subject user:john --subject group:admins
  --subject oauth2:client:uptime-kuma
Without --subject the caller is anonymous: rules with subjects "may match" and send the caller
to sign in.

Example:
  caddy oidc check-policy --config Caddyfile --url https://app.example.com/admin \
    --subject user:john --subject group:dev --ip 192.0.2.10`,
		func(cmd *cobra.Command, _ []string) error {
			res, err := checkPolicy(configFile, adapter, rawURL, method, ip, subjects)
			if err != nil {
				return err
			}
			if asJSON {
				return oidcprovider.PrintJSON(cmd.OutOrStdout(), res)
			}
			printPolicyCheck(cmd, res)
			return nil
		})
	f := cmd.Flags()
	f.StringVarP(&configFile, "config", "c", "", "the config file (required)")
	f.StringVarP(&adapter, "adapter", "a", "", "the config adapter (default caddyfile for a file named Caddyfile*, else JSON)")
	f.StringVarP(&rawURL, "url", "u", "", "the requested URL (required)")
	f.StringVarP(&method, "method", "m", "GET", "the request method")
	f.StringArrayVarP(&subjects, "subject", "s", nil, "the caller: user:<name>, group:<name> or oauth2:client:<id> (repeatable)")
	f.StringVar(&ip, "ip", "", "the caller's address, for rules with networks")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func printPolicyCheck(cmd *cobra.Command, res *policyCheck) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "Request: %s %s", res.Method, res.URL)
	if res.Subject != "" {
		fmt.Fprintf(w, " as %s", res.Subject)
	} else {
		fmt.Fprint(w, " (anonymous)")
	}
	if res.IP != "" {
		fmt.Fprintf(w, " from %s", res.IP)
	}
	fmt.Fprintln(w)
	switch {
	case res.Guarded:
		fmt.Fprintf(w, "Site: %s, guarded by oidc_auth\n", res.Site)
	case res.Site != "":
		fmt.Fprintf(w, "Site: %s, not guarded\n", res.Site)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "Note: %s\n", n)
	}
	fmt.Fprintln(w)
	for _, r := range res.Rules {
		fmt.Fprintf(w, "  %-9s  %-10s  %s\n", r.Match, r.Policy, r.Rule)
	}
	if len(res.Rules) == 0 {
		fmt.Fprintln(w, "  (no rules)")
	}
	fmt.Fprintf(w, "\nPolicy: %s (%s)\nAnswer: %s\n", res.Policy, res.Decided, res.Answer)
}

// checkPolicy loads the config and decides the request as the gate would.
func checkPolicy(configFile, adapterName, rawURL, method, ip string, subjects []string) (*policyCheck, error) {
	if configFile == "" {
		return nil, oidcprovider.UsageError(errors.New("--config is required"))
	}
	if rawURL == "" {
		return nil, oidcprovider.UsageError(errors.New("--url is required"))
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, oidcprovider.UsageError(fmt.Errorf("--url %q is not an absolute http(s) URL", rawURL))
	}
	res := &policyCheck{URL: rawURL, Method: method}
	subj, err := parseSubjects(subjects)
	if err != nil {
		return nil, oidcprovider.UsageError(err)
	}
	res.Subject = strings.Join(subjects, " ")
	req := accesscontrol.Request{Method: res.Method, RawQuery: u.RawQuery}
	if ip != "" {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, oidcprovider.UsageError(fmt.Errorf("--ip %q is not an IP address", ip))
		}
		req.IP, res.IP = addr.Unmap(), addr.String()
	}
	host, port := audience.SplitHost(u.Host)
	req.Host = host
	// Caddy's host matcher compares the Host as sent (without case), trailing dot included
	siteHost := strings.ToLower(u.Hostname())
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}

	cfg, err := loadConfig(configFile, adapterName)
	if err != nil {
		return nil, err
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	rawApp, ok := cfg.AppsRaw[oidcprovider.AppName]
	if !ok {
		return nil, errors.New("the config has no global 'oidc' option, so no site is guarded by Portcullis")
	}
	app := new(oidcprovider.App)
	if err := json.Unmarshal(rawApp, app); err != nil {
		return nil, fmt.Errorf("decoding the oidc app: %w", err)
	}
	// Provision checks and compiles the config; only Start opens the store
	if err := app.Provision(ctx); err != nil {
		return nil, fmt.Errorf("loading the oidc app: %w", err)
	}

	site, gateCfg, notes, err := findGate(cfg.AppsRaw["http"], siteHost, port, u)
	if err != nil {
		return nil, err
	}
	res.Site, res.Notes = site, notes
	var g *gate
	res.Guarded = gateCfg != nil
	if gateCfg != nil {
		if g, err = gateCfg.newGate(app); err != nil {
			return nil, fmt.Errorf("site %s: %w", site, err)
		}
	} else {
		res.Notes = append(res.Notes, "no oidc_auth guards this URL, so the gateway lets every request through; the rules below are the global ones, as a site that adds oidc_auth would see them")
		g = &gate{app: app, engine: accesscontrol.NewEngine(app.DefaultPolicy(), app.GlobalRules())}
	}

	if !upperMethod(method) {
		res.Answer, res.Policy, res.Decided = "400 (the gate refuses a method that is not in upper case)", "-", "-"
		res.Rules = []ruleCheck{}
		return res, nil
	}
	decoded, err := audience.CheckPath(u.EscapedPath())
	if err != nil {
		res.Answer, res.Policy, res.Decided = "400 (the gate refuses this path: "+err.Error()+")", "-", "-"
		res.Rules = []ruleCheck{}
		return res, nil
	}
	req.Path = decoded
	if ip == "" && hasNetworks(app, gateCfg) {
		res.Notes = append(res.Notes, "some rules have networks and no --ip was given: they are judged as not matching; pass --ip to judge them")
	}
	rules, d := g.engine.Explain(&req, subj)
	res.Rules = make([]ruleCheck, len(rules))
	for i, r := range rules {
		res.Rules[i] = ruleCheck{Rule: r.Name, Policy: r.Policy.String(), Match: r.Match.String()}
	}
	res.Policy, res.Decided = d.Policy.String(), g.engine.RuleName(d.Rule)
	found := identification{}
	if subj != nil {
		level := accesscontrol.OneFactor
		found.id = &identity{subject: *subj, level: level}
	}
	v, _ := g.decide(&req, &found, g.engine.Decide(&req, nil))
	switch {
	case gateCfg == nil:
		res.Answer = "allow (not guarded)"
	case v == verdictAllow:
		res.Answer = "allow"
	case v == verdictDeny || v == verdictForbidden:
		res.Answer = "403 forbidden"
		if d.Policy == accesscontrol.TwoFactor {
			res.Answer = "403 forbidden: the rule needs two factors, which client tokens and Basic credentials never carry (a person's session without a second factor is sent to the second-factor page)"
		}
	case v == verdictUnauthorized:
		res.Answer = "401 for an API client (Bearer challenge); a browser would be sent to sign in"
	default:
		res.Answer = "401 invalid_token"
	}
	if subj != nil && subj.ClientID == "" && subj.Username != "" {
		res.Notes = append(res.Notes, "user callers are judged with one factor, as Basic credentials are; a session or a user's token that passed a second factor also passes two_factor rules")
	}
	return res, nil
}

// parseSubjects turns --subject values into the subject the rules see; none is anonymous (nil).
func parseSubjects(list []string) (*accesscontrol.Subject, error) {
	if len(list) == 0 {
		return nil, nil
	}
	s := &accesscontrol.Subject{}
	for _, v := range list {
		kind, name, err := accesscontrol.ParseSubject(v)
		if err != nil {
			return nil, fmt.Errorf("--subject %q: %w", v, err)
		}
		switch kind {
		case accesscontrol.SubjectUser:
			if s.Username != "" && s.Username != name {
				return nil, fmt.Errorf("--subject: two users (%s and %s); a caller is one user with any number of groups", s.Username, name)
			}
			s.Username = name
		case accesscontrol.SubjectGroup:
			s.Groups = append(s.Groups, name)
		case accesscontrol.SubjectClient:
			if s.ClientID != "" && s.ClientID != name {
				return nil, fmt.Errorf("--subject: two clients (%s and %s)", s.ClientID, name)
			}
			s.ClientID = name
		}
	}
	if s.ClientID != "" && (s.Username != "" || len(s.Groups) > 0) {
		return nil, errors.New("--subject: a client (oauth2:client:) calls as itself, without a user or groups")
	}
	return s, nil
}

// loadConfig reads and adapts the config file to Caddy's JSON.
func loadConfig(file, adapterName string) (*caddy.Config, error) {
	body, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	if adapterName == "" && !strings.HasSuffix(file, ".json") {
		adapterName = "caddyfile"
	}
	if adapterName != "" {
		a := caddyconfig.GetAdapter(adapterName)
		if a == nil {
			return nil, oidcprovider.UsageError(fmt.Errorf("unknown config adapter %q", adapterName))
		}
		adapted, warnings, err := a.Adapt(body, map[string]any{"filename": file})
		if err != nil {
			return nil, fmt.Errorf("adapting the config: %w", err)
		}
		for _, w := range warnings {
			fmt.Fprintf(os.Stderr, "caddy oidc check-policy: %s\n", w.String())
		}
		body = adapted
	}
	var cfg caddy.Config
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, fmt.Errorf("decoding the config: %w", err)
	}
	return &cfg, nil
}

// The parts of the http app's JSON that findGate walks.
type (
	httpAppJSON struct {
		Servers map[string]*serverJSON `json:"servers"`
	}
	serverJSON struct {
		Listen []string    `json:"listen"`
		Routes []routeJSON `json:"routes"`
	}
	routeJSON struct {
		Group    string                       `json:"group"`
		Match    []map[string]json.RawMessage `json:"match"`
		Handle   []json.RawMessage            `json:"handle"`
		Terminal bool                         `json:"terminal"`
	}
	handlerJSON struct {
		Handler   string                     `json:"handler"`
		Routes    []routeJSON                `json:"routes"`
		Providers map[string]json.RawMessage `json:"providers"`
	}
)

// findGate finds the site serving host:port and the path of u, and the gate config of the first
// oidc_auth handler (or authentication handler with the oidc provider) on its way. It follows
// host and path matchers; a route with other matchers is assumed to apply, with a note.
func findGate(raw json.RawMessage, host, port string, u *url.URL) (string, *GateConfig, []string, error) {
	if raw == nil {
		return "", nil, []string{"the config has no http app"}, nil
	}
	var app httpAppJSON
	if err := json.Unmarshal(raw, &app); err != nil {
		return "", nil, nil, fmt.Errorf("decoding the http app: %w", err)
	}
	r, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	var notes []string
	names := make([]string, 0, len(app.Servers))
	for name := range app.Servers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		srv := app.Servers[name]
		if !listensOn(srv.Listen, port) {
			continue
		}
		for _, route := range srv.Routes {
			hosts, ok, n := routeApplies(route, host, r)
			notes = append(notes, n...)
			if !ok {
				continue
			}
			site := strings.Join(hosts, ", ")
			if site == "" {
				site = "(every host) on server " + name
			}
			gc, _, n, err := gateIn([]routeJSON{{Handle: route.Handle}}, r)
			return site, gc, append(notes, n...), err
		}
	}
	return "", nil, append(notes, "no site of the config serves "+host+" on port "+port), nil
}

// gateIn follows a route list as Caddy runs it, in order: a route whose matchers fail is
// skipped, a route of a group runs only if no earlier route of that group ran, and a terminal
// route ends the list. Within a route's handlers it returns the gate config of the first
// oidc_auth (or authentication handler with the oidc provider); a handler that answers the
// request itself (respond, reverse_proxy, file_server, …) before any gate means the request is
// served unguarded (done is true, with no config).
func gateIn(routes []routeJSON, r *http.Request) (gc *GateConfig, done bool, notes []string, err error) {
	ran := map[string]bool{}
	for _, route := range routes {
		if route.Group != "" && ran[route.Group] {
			continue
		}
		_, ok, n := routeApplies(route, "", r)
		notes = append(notes, n...)
		if !ok {
			continue
		}
		if route.Group != "" {
			ran[route.Group] = true
		}
		for _, raw := range route.Handle {
			var h handlerJSON
			if err := json.Unmarshal(raw, &h); err != nil {
				return nil, true, notes, fmt.Errorf("decoding a handler: %w", err)
			}
			switch h.Handler {
			case "oidc_auth":
				var c GateConfig
				if err := json.Unmarshal(raw, &c); err != nil {
					return nil, true, notes, fmt.Errorf("decoding oidc_auth: %w", err)
				}
				return &c, true, notes, nil
			case "authentication":
				if p, ok := h.Providers["oidc"]; ok {
					var c GateConfig
					if err := json.Unmarshal(p, &c); err != nil {
						return nil, true, notes, fmt.Errorf("decoding the oidc authentication provider: %w", err)
					}
					return &c, true, notes, nil
				}
				notes = append(notes, "an authentication handler without the oidc provider runs first")
			case "subroute":
				gc, done, n, err := gateIn(h.Routes, r)
				notes = append(notes, n...)
				if done || gc != nil || err != nil {
					return gc, true, notes, err
				}
			case "static_response", "reverse_proxy", "file_server", "error", "php_fastcgi", "copy_response", "acme_server":
				return nil, true, notes, nil // the request is answered here, before any gate
			}
		}
		if route.Terminal {
			return nil, true, notes, nil
		}
	}
	return nil, false, notes, nil
}

// routeApplies reports whether a route's matcher sets let the request through: any set may
// match (OR), and within a set the host and path matchers must (AND). With host == "" the host
// matcher is not consulted (nested routes). It returns the route's host names for display.
func routeApplies(route routeJSON, host string, r *http.Request) ([]string, bool, []string) {
	if len(route.Match) == 0 {
		return nil, true, nil
	}
	var hosts, notes []string
	any := false
	for _, set := range route.Match {
		ok := true
		for kind, raw := range set {
			switch kind {
			case "host":
				var list []string
				_ = json.Unmarshal(raw, &list)
				hosts = append(hosts, list...)
				if host != "" && !hostMatches(list, host) {
					ok = false
				}
			case "path":
				var m caddyhttp.MatchPath
				if json.Unmarshal(raw, &m) != nil || m.Provision(caddy.Context{}) != nil {
					ok = false
					continue
				}
				if matched, err := m.MatchWithError(r); err != nil || !matched {
					ok = false
				}
			default:
				notes = append(notes, fmt.Sprintf("a route matches on %q, which check-policy does not evaluate; it is assumed to match", kind))
			}
		}
		any = any || ok
	}
	return hosts, any, notes
}

// hostMatches follows Caddy's host matcher: exact names, case-insensitive, and "*" labels.
func hostMatches(patterns []string, host string) bool {
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == host {
			return true
		}
		pl, hl := strings.Split(p, "."), strings.Split(host, ".")
		if len(pl) != len(hl) {
			continue
		}
		ok := true
		for i := range pl {
			if pl[i] != "*" && pl[i] != hl[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// listensOn reports whether a server's listen addresses include port.
func listensOn(listen []string, port string) bool {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return false
	}
	for _, l := range listen {
		addr, err := caddy.ParseNetworkAddress(l)
		if err != nil {
			continue
		}
		if uint(p) >= addr.StartPort && uint(p) <= addr.EndPort {
			return true
		}
	}
	return false
}

// hasNetworks reports whether a rule of the site or of the global list has a networks criterion.
func hasNetworks(app *oidcprovider.App, gc *GateConfig) bool {
	var rules []accesscontrol.Rule
	if app.AccessControl != nil {
		rules = append(rules, app.AccessControl.Rules...)
	}
	if gc != nil {
		rules = append(rules, gc.Rules...)
	}
	for _, r := range rules {
		if len(r.Networks) > 0 {
			return true
		}
	}
	return false
}
