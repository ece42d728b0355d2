package oauth

import (
	"net/url"
	"testing"
	"time"
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

// BenchmarkCheckBearerJWTHit measures the gate's check of a JWT access token (ES256 and RS256)
// whose signature it verified before, with 200,000 revoked tokens in memory: no store read, the
// revocation lookups, the cut-offs and the client's rules.
func BenchmarkCheckBearerJWTHit(b *testing.B) {
	for _, client := range []string{"jmon", "jrs"} {
		b.Run(client, func(b *testing.B) {
			f := newJWTProvider(b, b.TempDir())
			exp := time.Now().Add(time.Hour).Unix()
			f.revocations.mu.Lock()
			for range 200000 {
				f.revocations.tokens[mustJTI(b, time.Now())] = exp
			}
			f.revocations.mu.Unlock()
			tok := f.mintCC(client)
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
		})
	}
}

// BenchmarkCheckBearerJWTMiss measures the first check of a JWT access token: the signature
// verification and decoding the gate pays once per token (per config).
func BenchmarkCheckBearerJWTMiss(b *testing.B) {
	for _, client := range []string{"jmon", "jrs"} {
		b.Run(client, func(b *testing.B) {
			f := newJWTProvider(b, b.TempDir())
			tok := f.mintCC(client)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.p.verifyAccessJWT(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
