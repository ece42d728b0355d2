package oidcprovider

import (
	"context"
	"net/url"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// gather reads a registry into metric name → label → value (counters, gauges, histogram counts).
func gather(t *testing.T, reg *prometheus.Registry) map[string]map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	out := map[string]map[string]float64{}
	for _, f := range families {
		series := map[string]float64{}
		for _, m := range f.GetMetric() {
			label := ""
			for _, l := range m.GetLabel() {
				label += l.GetName() + "=" + l.GetValue() + ","
			}
			switch {
			case m.GetCounter() != nil:
				series[label] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				series[label] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				series[label] = float64(m.GetHistogram().GetSampleCount())
			}
		}
		out[f.GetName()] = series
	}
	return out
}

// startAppOn provisions and starts an oidc app on storage in a context of its own (a config of
// its own, with its own metrics registry, as a reload makes).
func startAppOn(t *testing.T, storage StorageConfig) (*App, *Handler, *prometheus.Registry) {
	t.Helper()
	a := &App{Issuer: "https://auth.example.com", Storage: storage, Clients: testClients}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	return a, NewHandler(a), ctx.GetMetricsRegistry()
}

var storeMetrics = []string{"portcullis_store_statement_duration_seconds", "portcullis_store_changes_sent_total",
	"portcullis_store_changes_received_total", "portcullis_store_listener_up"}

// With a PostgreSQL store the store's metrics are in the config's registry; the config after a
// reload has them too, counting on from the same open store; with Badger there are none.
func TestStoreMetricsInTheRegistry(t *testing.T) {
	srv := pgtest.Start(t)
	storage := StorageConfig{Postgres: &postgres.Config{DSN: srv.Database(t)}}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}

	old, h, oldReg := startAppOn(t, storage)
	if res := call(t, h, "POST", oauth.PathToken, form, "uptime-kuma-monitor", "insecure_secret"); res.status != 200 {
		t.Fatalf("token: %+v", res)
	}
	got := gather(t, oldReg)
	for _, name := range storeMetrics {
		if got[name] == nil {
			t.Errorf("%s is not in the registry", name)
		}
	}
	puts := got["portcullis_store_statement_duration_seconds"]["operation=put,"]
	if puts < 1 || got["portcullis_store_listener_up"][""] != 1 {
		t.Errorf("after a token: %v puts, listener_up %v", puts, got["portcullis_store_listener_up"])
	}

	// a reload: the new config starts before the old one stops, on the same store
	_, h2, newReg := startAppOn(t, storage)
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	if res := call(t, h2, "POST", oauth.PathToken, form, "uptime-kuma-monitor", "insecure_secret"); res.status != 200 {
		t.Fatalf("token after the reload: %+v", res)
	}
	after := gather(t, newReg)
	if n := after["portcullis_store_statement_duration_seconds"]["operation=put,"]; n < puts+1 {
		t.Errorf("after the reload the registry counts %v puts, before it %v: not the same store", n, puts)
	}
	if got := gather(t, oldReg); got["portcullis_store_listener_up"] != nil {
		t.Errorf("the stopped config still reports the store: %v", got["portcullis_store_listener_up"])
	}

	_, bh, badgerReg := startAppOn(t, StorageConfig{Dir: t.TempDir()})
	if res := call(t, bh, "POST", oauth.PathToken, form, "uptime-kuma-monitor", "insecure_secret"); res.status != 200 {
		t.Fatalf("token on Badger: %+v", res)
	}
	onBadger := gather(t, badgerReg)
	for _, name := range storeMetrics {
		if onBadger[name] != nil {
			t.Errorf("%s is in a Badger config's registry", name)
		}
	}
	if onBadger["portcullis_tokens_issued_total"] == nil {
		t.Error("the provider's own metrics are missing on Badger")
	}
}
