package oidcprovider

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are Portcullis's figures in Caddy's Prometheus registry (served wherever the admin
// "metrics" endpoint is). Labels have low cardinality: registered client ids, grant types,
// error codes, policies, answers, and the hosts named by the rules; never a token, a user name, an
// address or a client id as presented. A nil *metrics records nothing.
type metrics struct {
	tokensIssued  *prometheus.CounterVec // client, grant
	tokensRefused *prometheus.CounterVec // grant, error
	tokensRevoked prometheus.Counter
	authFailures  *prometheus.CounterVec // reason
	gate          *prometheus.CounterVec // site, policy, answer
	signIns       *prometheus.CounterVec // via, factor, result
	bans          prometheus.Counter
	backchannel   *prometheus.CounterVec // client, result (backchannel.go)
}

// Names of the metrics.
const (
	metricNamespace = "portcullis"
)

// newMetrics registers the collectors in reg (nil: a context without metrics, as in tests and
// check-policy) and reads the store's figures from app at each scrape.
func newMetrics(reg *prometheus.Registry, app *App) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		tokensIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "tokens_issued_total",
			Help: "Access tokens issued, by registered client and grant type.",
		}, []string{"client", "grant"}),
		tokensRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "token_requests_refused_total",
			Help: "Token requests refused, by grant type (\"other\" for unsupported ones) and OAuth 2.0 error code.",
		}, []string{"grant", "error"}),
		tokensRevoked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "tokens_revoked_total",
			Help: "Revocation requests for an authentic token at the revocation endpoint, and tokens ended by caddy oidc tokens revoke.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "client_auth_failures_total",
			Help: "Failed client authentications, by reason: wrong_secret, unknown_client, wrong_method, bad_assertion, throttled.",
		}, []string{"reason"}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "gate_decisions_total",
			Help: "Requests decided by oidc_auth, by site (a host the rules name, else \"other\"), policy and answer.",
		}, []string{"site", "policy", "answer"}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "sign_ins_total",
			Help: "Factors checked, by via (portal, or basic for credentials on a request; a remembered Basic password is not counted), factor (password, totp, webauthn, or code for a mailed one-time code) and result (success, failure, banned).",
		}, []string{"via", "factor", "result"}),
		bans: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "bans_total",
			Help: "Bans begun by regulation (a user at an address, or an address).",
		}),
	}
	storeSize := func(part string) func() float64 {
		return func() float64 {
			st := app.state.Load()
			if st == nil || st.backend.badger == nil {
				return 0
			}
			lsm, vlog := st.backend.badger.Size()
			if part == "vlog" {
				return float64(vlog)
			}
			return float64(lsm)
		}
	}
	collectors := []prometheus.Collector{m.tokensIssued, m.tokensRefused, m.tokensRevoked, m.authFailures, m.gate, m.signIns, m.bans,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "store_size_bytes", ConstLabels: prometheus.Labels{"part": "lsm"},
			Help: "Bytes in the store's files, by part: lsm (the tables) and vlog (the value log).",
		}, storeSize("lsm")),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "store_size_bytes", ConstLabels: prometheus.Labels{"part": "vlog"},
			Help: "Bytes in the store's files, by part: lsm (the tables) and vlog (the value log).",
		}, storeSize("vlog")),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "store_gc_runs_total",
			Help: "Value-log garbage collections run on the store since it opened.",
		}, func() float64 {
			if st := app.state.Load(); st != nil && st.backend.badger != nil {
				return float64(st.backend.badger.GCRuns())
			}
			return 0
		}),
	}
	m.backchannel = newBackchannelCounter()
	collectors = append(collectors, storeCollector{app}, m.backchannel)
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) tokenIssued(client, grant string) {
	if m != nil {
		m.tokensIssued.WithLabelValues(client, grant).Inc()
	}
}

func (m *metrics) tokenRefused(grant, errCode string) {
	if m != nil {
		m.tokensRefused.WithLabelValues(grant, errCode).Inc()
	}
}

func (m *metrics) tokenRevoked() {
	if m != nil {
		m.tokensRevoked.Inc()
	}
}

func (m *metrics) authFailed(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) signIn(via, factor, result string) {
	if m != nil {
		m.signIns.WithLabelValues(via, factor, result).Inc()
	}
}

func (m *metrics) banned() {
	if m != nil {
		m.bans.Inc()
	}
}

// storeCollector puts the shared store's own metrics (postgres.Store.Collectors: the latency and
// errors of its operations, the changes its feed sent and received, whether it listens) in the
// config's registry, read from the running state's store at each scrape. With Badger it yields
// nothing. It describes no metric in advance (an unchecked collector, as Prometheus calls it):
// the store opens at Start, after the registry is built, and outlives the config across
// reloads, so each config's registry reads the one open store, and registering it never
// clashes with an earlier config's.
type storeCollector struct{ app *App }

// Describe sends nothing: the store's metrics exist only once a PostgreSQL store is open.
func (storeCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the open PostgreSQL store's metrics.
func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.app.state.Load()
	if st == nil || st.backend.pg == nil {
		return
	}
	for _, m := range st.backend.pg.Collectors() {
		m.Collect(ch)
	}
}
