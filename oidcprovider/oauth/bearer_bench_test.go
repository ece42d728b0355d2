package oauth

import (
	"net/url"
	"testing"
)

// BenchmarkCheckBearerHit measures the gate's token check on a cache hit (Badger: no change
// feed), the provider's part of BenchmarkBearerCheck.
func BenchmarkCheckBearerHit(b *testing.B) {
	f := newFlowProvider(b)
	_, out := f.token("monitor", url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}, "audience": {"https://status.example.com/"}})
	tok, _ := out["access_token"].(string)
	if tok == "" {
		b.Fatal(out)
	}
	ctx := b.Context()
	if _, err := f.p.CheckBearer(ctx, tok, statusPage); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.p.CheckBearer(ctx, tok, statusPage); err != nil {
			b.Fatal(err)
		}
	}
}
