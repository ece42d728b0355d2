package postgres

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// server is the package's one PostgreSQL server, started by TestMain; each test makes a fresh
// database on it. Tests that stop the server start their own.
var (
	server     *pgtest.Server
	serverSkip string
)

// mainTB is the testing.TB of TestMain, for pgtest.Start: enough of it for what Start uses.
type mainTB struct {
	testing.TB
	cleanups []func()
	skipped  string
}

func (m *mainTB) Helper()                   {}
func (m *mainTB) Cleanup(f func())          { m.cleanups = append(m.cleanups, f) }
func (m *mainTB) Logf(f string, a ...any)   { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (m *mainTB) Fatal(a ...any)            { m.fail(fmt.Sprint(a...)) }
func (m *mainTB) Fatalf(f string, a ...any) { m.fail(fmt.Sprintf(f, a...)) }
func (m *mainTB) Skip(a ...any)             { m.skipped = fmt.Sprint(a...); panic(m) }
func (m *mainTB) fail(msg string) {
	fmt.Fprintln(os.Stderr, "TestMain:", msg)
	m.cleanup()
	os.Exit(1)
}
func (m *mainTB) cleanup() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
}

func TestMain(m *testing.M) {
	tb := &mainTB{}
	func() {
		defer func() {
			if r := recover(); r != nil && r != any(tb) {
				panic(r)
			}
		}()
		server = pgtest.Start(tb)
	}()
	serverSkip = tb.skipped
	code := m.Run()
	tb.cleanup()
	os.Exit(code)
}

// newServer is the shared server, or skips t when PostgreSQL is not installed here.
func newServer(t *testing.T) *pgtest.Server {
	t.Helper()
	if server == nil {
		t.Skip(serverSkip)
	}
	return server
}

// openDSN opens a store on dsn, destructed when t ends.
func openDSN(t *testing.T, dsn string, o options) *Store {
	t.Helper()
	s, err := open(context.Background(), Config{DSN: dsn}, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Destruct() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// counterValue reads a counter or gauge.
func counterValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
