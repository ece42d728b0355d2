package oidcprovider

import (
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// backchannelRetriesEnv shortens the waits between back-channel logout deliveries for tests
// (a comma-separated list of durations, e.g. "1s,1s,2s"): a hook of the test suite, not an
// option, and so not documented with the configuration. Unset, the provider's defaults apply.
const backchannelRetriesEnv = "PORTCULLIS_TEST_BACKCHANNEL_RETRIES"

// backchannelRetries reads backchannelRetriesEnv; nil when it is unset or unreadable (logged).
func backchannelRetries(logger *zap.Logger) []time.Duration {
	v := os.Getenv(backchannelRetriesEnv)
	if v == "" {
		return nil
	}
	var out []time.Duration
	for _, f := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			logger.Warn("ignoring "+backchannelRetriesEnv+": it is a comma-separated list of positive durations", zap.String("value", v))
			return nil
		}
		out = append(out, d)
	}
	logger.Warn(backchannelRetriesEnv+" is set: back-channel logouts are retried on a test schedule", zap.Durations("retries", out))
	return out
}

// sessionLifespan is the longest a portal session lives (the longer of expiration and
// remember_me), 0 without a portal.
func (a *App) sessionLifespan() time.Duration {
	if a.portal == nil {
		return 0
	}
	s := a.portal.sessions.WithDefaults()
	return max(s.Expiration, s.RememberMe)
}

// newBackchannelCounter is portcullis_backchannel_logouts_total.
func newBackchannelCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricNamespace, Name: "backchannel_logouts_total",
		Help: "Back-channel logout deliveries, by registered client and result: delivered, retried (a failed attempt that will be retried), given_up (the last attempt failed), dropped (the client is gone or has no backchannel_logout_uri any more).",
	}, []string{"client", "result"})
}

func (m *metrics) backchannelLogout(client, result string) {
	if m != nil {
		m.backchannel.WithLabelValues(client, result).Inc()
	}
}
