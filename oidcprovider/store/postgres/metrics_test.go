package postgres

import (
	"slices"
	"testing"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/prometheus/client_golang/prometheus"
)

// The collectors register in one registry and carry the documented names and labels.
func TestCollectors(t *testing.T) {
	srv := newServer(t)
	s := openDSN(t, srv.Database(t), options{})
	reg := prometheus.NewPedanticRegistry()
	for _, c := range s.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	s.Watch([]byte("k"), func([]byte) {})
	must(t, s.Put(t.Context(), store.Entry{Key: []byte("k"), Value: []byte("v")}))
	if _, err := s.Get(t.Context(), []byte("missing")); err == nil {
		t.Fatal("missing key found")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	want := []string{"portcullis_store_changes_received_total", "portcullis_store_changes_sent_total",
		"portcullis_store_listener_up", "portcullis_store_statement_duration_seconds"}
	for _, w := range want {
		if !slices.Contains(names, w) {
			t.Errorf("%s missing from %q", w, names)
		}
	}
	// a key not found is not an error
	if counterValue(s.metrics.errors.WithLabelValues("get")) != 0 {
		t.Error("a key not found counted as an error")
	}
	if counterValue(s.metrics.listenerUp) != 1 || counterValue(s.metrics.changesSent) != 1 {
		t.Errorf("listener_up %v, changes_sent %v; want 1, 1", counterValue(s.metrics.listenerUp), counterValue(s.metrics.changesSent))
	}
}
